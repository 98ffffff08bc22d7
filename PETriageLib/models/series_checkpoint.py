"""Files of the series models (patient classifiers, slice refiners): weights-only, bound to the
two stage models whose features they read (by SHA256), their contents checked against the digest
that ``write_checkpoint`` stores in them."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import torch

from PETriageLib.errors import CheckpointError

FORMAT = "petriage-series-model"
FORMAT_VERSION = 1
TYPES = ("patient_classifier", "slice_refiner")


class SeriesModel(NamedTuple):
    """A loaded series model and its file's meta (unpacks as ``model, meta``)."""

    model: torch.nn.Module
    meta: dict

    @property
    def features(self) -> str:
        """The slice feature kind it reads (models.features.FEATURE_KINDS)."""
        return str(self.meta["features"])

    @property
    def threshold(self) -> float:
        """A patient classifier's operating point on p(PE)."""
        return float(self.meta["threshold"])

    @property
    def thresholds(self) -> "tuple[float, float]":
        """A slice refiner's (p(disease), p(PE)) operating points."""
        return float(self.meta["threshold_disease"]), float(self.meta["threshold_pe"])


def save_series_model(path: "str | Path", model: torch.nn.Module, meta: dict) -> Path:
    """meta: ``type`` (TYPES), ``stages`` ([{"sha256", "path"}] x 2), ``features`` and what
    rebuilds the model (``in_features``, ``hidden``, ``dropout``, for classifiers ``head``)."""
    from PETriageLib import __version__

    if meta.get("type") not in TYPES or len(meta.get("stages", [])) != 2:
        raise ValueError(f"series model meta needs a type in {TYPES} and two stages, got {meta!r}")
    from PETriageLib.models.checkpoint import write_checkpoint

    return write_checkpoint(path, {"format": FORMAT, "format_version": FORMAT_VERSION,
                                   "meta": {**meta, "version": __version__}, "state_dict": model.state_dict()})


def _build(meta: dict) -> torch.nn.Module:
    from PETriageLib.models.series_nets import SliceRefiner, build_patient_model

    if meta["type"] == "slice_refiner":
        return SliceRefiner(meta["in_features"], meta["hidden"], meta["dropout"])
    return build_patient_model(meta["in_features"], meta["head"], meta["hidden"], meta["dropout"])


def load_series_model(path: "str | Path", kind: str, stage_sha256: "Sequence[str | Sequence[str]] | None" = None
                      ) -> SeriesModel:
    """(model in eval mode, meta). ``path``: a file or a name registered under ``series_models`` in
    Resources/models.json (SHA256 checked). ``kind``: the type expected; with ``stage_sha256`` the
    model must have been trained on the features of exactly those stage models: per stage one
    SHA256, or several (the files of the same weights, as ``Stage.identities`` lists them)."""
    from PETriageLib.models.checkpoint import check_digest, file_sha256
    from PETriageLib.models.zoo import resolve_series_model

    what = kind.replace("_", " ")
    if not Path(path).is_file() and Path(path).suffix:  # a file name that is not there
        raise CheckpointError(f"{what} {path} not found")
    path, expected = resolve_series_model(path)  # or a name registered in Resources/models.json
    if not path.is_file():
        raise CheckpointError(f"{what} {path} not found")
    if expected and file_sha256(path).lower() != expected.lower():
        raise CheckpointError(f"{what} {path} does not match its registered SHA256 {expected}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, or pickled code (refused)
        raise CheckpointError(f"{what} {path} cannot be loaded weights-only: {exc}") from None
    if (not isinstance(data, dict) or data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION
            or data.get("meta", {}).get("type") != kind):
        raise CheckpointError(f"{path} is not a PETriage {what} (format {FORMAT} v{FORMAT_VERSION}, type {kind})")
    check_digest(data, path, registered=bool(expected), what=what)
    meta = data["meta"]
    if stage_sha256 is not None:
        trained_on = [s["sha256"].lower() for s in meta["stages"]]
        accepted = [{s.lower()} if isinstance(s, str) else {x.lower() for x in s} for s in stage_sha256]
        if len(trained_on) != len(accepted) or any(t not in a for t, a in zip(trained_on, accepted)):
            raise CheckpointError(f"{what} {path} was trained on the features of other stage models "
                                  f"({', '.join(s['path'] for s in meta['stages'])}); retrain it for these")
    model = _build(meta)
    model.load_state_dict(data["state_dict"], strict=True)
    return SeriesModel(model.eval(), meta)


def load_patient_classifier(path: "str | Path", stage_sha256: "Sequence[str | Sequence[str]] | None" = None
                            ) -> SeriesModel:
    """A patient classifier; with ``stage_sha256`` it must have been trained on those stage models."""
    return load_series_model(path, "patient_classifier", stage_sha256)


def load_slice_refiner(path: "str | Path", stage_sha256: "Sequence[str | Sequence[str]] | None" = None
                       ) -> SeriesModel:
    """A slice refiner; with ``stage_sha256`` it must have been trained on those stage models."""
    return load_series_model(path, "slice_refiner", stage_sha256)
