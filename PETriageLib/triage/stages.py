"""The two stage models as the cascade holds them: loaded from a registered name or a checkpoint
file, their class names checked, with what a report says about where they came from."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from PETriageLib.errors import CheckpointError
from PETriageLib.vocabulary import STAGE_CLASSES


@dataclass(frozen=True)
class ModelInfo:
    """Where one stage's model came from and how it is fed: a line of every report."""

    stage: int
    name: str
    path: str | None
    sha256: str | None
    architecture: str | None
    windows: Any
    input_size: int | None
    crop: str | None
    class_names: list | None
    threshold: float
    version: str | None
    domain_threshold: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Stage:
    """One loaded model with what the cascade needs to feed it and to report it."""

    number: int
    model: Any  # torch.nn.Module
    meta: dict
    name: str
    sha256: str | None = None
    path: str | None = None
    domain: Any = None  # models.domain_stats.DomainModel from the checkpoint, or None

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", 0.5))

    def identities(self) -> list[str]:
        """SHA256 of this file and of the earlier files of the same weights (before the domain
        statistics were added): series models trained on any of them read the same features."""
        return [s for s in [self.sha256, *self.meta.get("domain", {}).get("same_weights_as", [])] if s]

    def info(self) -> ModelInfo:
        m = self.meta
        return ModelInfo(stage=self.number, name=self.name, path=self.path, sha256=self.sha256,
                         architecture=m.get("architecture"), windows=m.get("windows"),
                         input_size=m.get("input_size"), crop=m.get("crop"), class_names=m.get("class_names"),
                         threshold=self.threshold, version=m.get("version"),
                         domain_threshold=None if self.domain is None else self.domain.threshold)


def load_stage(number: int, spec: str | Path) -> Stage:
    """A stage from a registered model name or a checkpoint path (SHA256 and class names checked)."""
    from PETriageLib.models.checkpoint import file_sha256, model_from_checkpoint, read_checkpoint
    from PETriageLib.models.domain_stats import DomainModel
    from PETriageLib.models.zoo import resolve_model

    path, expected = resolve_model(str(spec))
    data = read_checkpoint(path, expected_sha256=expected)
    model, meta = model_from_checkpoint(data, path), data["meta"]
    classes = list(meta.get("class_names") or [])
    if classes and classes != list(STAGE_CLASSES[number]):
        raise CheckpointError(f"{path}: class names {classes} do not fit stage {number} "
                              f"(expected {list(STAGE_CLASSES[number])})")
    name = str(spec) if not Path(str(spec)).exists() else Path(path).stem
    try:
        domain = DomainModel.from_payload(data.get("domain"), meta.get("domain"))
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}; fit it again with petriage fit-domain") from None
    if domain is not None and not _finite_domain(domain):
        raise CheckpointError(f"{path}: its domain statistics (mean, precision or threshold) are not all finite; "
                              "fit them again with petriage fit-domain")
    width = getattr(getattr(model, "fc", None), "in_features", None)
    if domain is not None and len(domain.mean) != width:
        raise CheckpointError(f"{path}: its domain statistics describe {len(domain.mean)} features, the model "
                              f"pools {width}; fit them again with petriage fit-domain")
    return Stage(number, model, meta, name=name, sha256=expected or file_sha256(path), path=str(path), domain=domain)


def _finite_domain(domain: Any) -> bool:
    """NaN in the statistics would blame every series for a damaged checkpoint."""
    return bool(np.isfinite(domain.mean).all() and np.isfinite(domain.precision).all()
                and math.isfinite(float(domain.threshold)))


def default_models() -> tuple[str, str]:
    """Names of the first stage 1 and stage 2 models in Resources/models.json."""
    from PETriageLib.models.zoo import manifest_path, read_manifest

    entries = read_manifest()["models"]
    names = [next((e["name"] for e in entries if e["stage"] == n), None) for n in (1, 2)]
    if None in names:
        raise CheckpointError(f"{manifest_path()} registers no stage {names.index(None) + 1} model; "
                              "pass --models STAGE1 STAGE2 (names or checkpoint files)")
    return names[0], names[1]
