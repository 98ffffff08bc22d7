"""Embolus segmentation of a triaged series: the model that ran, the probability and mask on the
CT's own grid, and what report.json / summary.md / worklist.csv say about the clot (issue #24)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

from PETriageLib.ingest.volume import CTVolume
from PETriageLib.triage.verdict import PatientVerdict, runs
from PETriageLib.vocabulary import LESION_TITLES

if TYPE_CHECKING:  # torch is loaded only where a model runs (reports and results import this module)
    from PETriageLib.models.seg_base import SegmentationNet

PATHWAYS = ("ctpa", "nct")
# the task a checkpoint must hold for each pathway: a CTPA series takes any segmentation model,
# a non-contrast one only a cross-phase (CPMN) model, whose inference is its NCT pathway
PATHWAY_TASKS = {"ctpa": ("segmentation", "cross_phase"), "nct": ("cross_phase",)}


# report.json's "embolus" block (EmbolusResult.to_dict), which the Slicer module reads back; a model
# that segments other lesion classes too adds "other_lesions": {class: the same keys + "lesion"}
REPORT_KEYS = ("model", "pathway", "threshold", "volume_ml", "max_probability", "slices", "n_components", "files")


@dataclass
class EmbolusResult:
    """What the segmentation found; ``probability`` (float32) and ``mask`` (uint8 0/1) are on the CT's grid."""

    model: str
    pathway: str
    threshold: float
    volume_ml: float
    max_probability: float
    slices: list[int]
    n_components: int
    probability: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    lesion: str = "pe"  # the lesion class (vocabulary.LESION_CLASSES); "pe" for the embolus
    # the same model's other lesion classes (e.g. "other": other lung disease), each its own result
    others: dict[str, "EmbolusResult"] = field(default_factory=dict, repr=False)

    @property
    def found(self) -> bool:
        return self.n_components > 0

    def file_names(self, nifti: bool = False) -> dict[str, str]:
        ext = ".nii.gz" if nifti else ".nrrd"
        prefix = LESION_TITLES[self.lesion].replace(" ", "_")  # embolus_..., other_disease_...
        return {"probability": f"{prefix}_probability{ext}", "mask": f"{prefix}_mask{ext}"}

    def slices_text(self) -> str:
        """``a-b`` of the slices with clot ("" when none), as worklist.csv writes it."""
        return "" if not self.slices else f"{self.slices[0]}-{self.slices[-1]}"

    def to_dict(self, nifti: bool = False) -> dict[str, Any]:
        d = {"model": self.model, "pathway": self.pathway, "threshold": self.threshold,
             "volume_ml": self.volume_ml, "max_probability": self.max_probability, "slices": list(self.slices),
             "n_components": self.n_components, "files": self.file_names(nifti)}
        if self.lesion != "pe":
            d["lesion"] = self.lesion
        if self.others:
            d["other_lesions"] = {c: r.to_dict(nifti) for c, r in self.others.items()}
        return d


@dataclass(frozen=True)
class EmbolusModel:
    """A loaded segmentation checkpoint for one pathway."""

    name: str
    pathway: str
    model: "SegmentationNet"
    meta: dict
    sha256: str = ""

    @property
    def threshold(self) -> float:
        return self._point()[0]

    @property
    def min_component_ml(self) -> float:
        return self._point()[1]

    def _point(self) -> tuple[float, float]:
        """The embolus class's operating point (a model may segment other lesion classes too)."""
        from PETriageLib.models.seg_checkpoint import class_point

        return class_point(self.meta, "pe")

    def segment(self, volume: CTVolume) -> EmbolusResult:
        """Probability and mask of ``volume`` at the checkpoint's input size and windows; a model
        with other lesion classes gives theirs too (``EmbolusResult.others``), each at its own point."""
        from PETriageLib.models.seg_checkpoint import class_point
        from PETriageLib.models.seg_predict import predict_lesion_probabilities

        probs = predict_lesion_probabilities(self.model, volume, self.meta.get("input_size"), self.meta.get("windows"),
                                             pixel_mm=self.meta.get("pixel_mm"))
        result = embolus_result(self.name, self.pathway, self.threshold, probs.pop("pe"), volume,
                                self.min_component_ml)
        for lesion, prob in probs.items():
            threshold, min_ml = class_point(self.meta, lesion)
            result.others[lesion] = embolus_result(self.name, self.pathway, threshold, prob, volume, min_ml, lesion)
        return result


def large_components(binary: np.ndarray, min_voxels: float = 0.0) -> tuple[np.ndarray, int]:
    """(labels 1..count, count) of the 3D face-connected components of ``binary`` with at least
    ``min_voxels`` voxels: one clot across slices is one component. Triage and the segmentation
    evaluation (training/seg_volume_eval) drop small components with this one rule."""
    labels, n = ndimage.label(binary)
    if n and min_voxels > 0:
        keep = np.bincount(labels.ravel()) >= min_voxels
        keep[0] = False
        if not keep[1:].all():
            renumber = np.zeros(n + 1, labels.dtype)
            renumber[keep] = np.arange(1, int(keep.sum()) + 1)
            labels, n = renumber[labels], int(keep.sum())
    return labels, int(n)


def embolus_result(model: str, pathway: str, threshold: float, probability: np.ndarray,
                   volume: CTVolume, min_component_ml: float = 0.0, lesion: str = "pe") -> EmbolusResult:
    """An EmbolusResult from a probability map; one not on the CT's grid is refused (never written).
    Components under ``min_component_ml`` (the checkpoint's operating point) are left out of the mask.
    ``lesion``: the class the map is of (another class than "pe" for a lesion model's other channels)."""
    from PETriageLib.models.seg_predict import check_on_grid, clot_volume_ml

    check_on_grid(probability, volume, f"{LESION_TITLES[lesion]} probability")
    prob = np.asarray(probability, np.float32)
    mask = (prob >= threshold).astype(np.uint8)
    voxel_ml = float(np.prod([float(s) for s in volume.spacing])) / 1000.0
    labels, n_components = large_components(mask, min_component_ml / voxel_ml)
    mask = (labels > 0).astype(np.uint8)
    slices = [int(k) for k in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))]
    return EmbolusResult(model=model, pathway=pathway, threshold=float(threshold),
                         volume_ml=float(clot_volume_ml(mask, volume)),
                         max_probability=round(float(prob.max()) if prob.size else 0.0, 4), slices=slices,
                         n_components=int(n_components), probability=prob, mask=mask, lesion=lesion)


def slice_ranges(slices: list[int]) -> list[tuple[int, int]]:
    """Inclusive runs of consecutive slice indices."""
    if not slices:
        return []
    flags = np.zeros(slices[-1] + 1, bool)
    flags[slices] = True
    return runs(flags)


def load_embolus_model(spec: "str | Path", pathway: str, device: Any = "cpu") -> EmbolusModel:
    """A segmentation checkpoint (file or registered name) for ``pathway``; a checkpoint of the wrong
    task for it (a plain segmentation model for non-contrast series) is refused by name."""
    from PETriageLib.errors import CheckpointError
    from PETriageLib.models.checkpoint import file_sha256
    from PETriageLib.models.seg_checkpoint import load_seg_checkpoint
    from PETriageLib.models.zoo import resolve_segmentation_model

    if pathway not in PATHWAYS:
        raise ValueError(f"unknown pathway {pathway!r}; use one of {', '.join(PATHWAYS)}")
    path, expected = resolve_segmentation_model(str(spec))
    model, meta = load_seg_checkpoint(path, expected)
    if meta["task"] not in PATHWAY_TASKS[pathway]:
        raise CheckpointError(f"{path} holds a {meta['task']} model ({meta['architecture']}); the {pathway} "
                              f"pathway needs {' or '.join(PATHWAY_TASKS[pathway])}")
    if "pe" not in model.classes:
        raise CheckpointError(f"{path} segments {', '.join(model.classes)} only, not emboli: it cannot find PE "
                              "(train it with --lesion-classes pe or pe,other)")
    name = str(spec) if not Path(str(spec)).exists() else Path(path).name
    return EmbolusModel(name, pathway, model.to(device).eval(), meta, expected or file_sha256(path))


def default_embolus_model(pathway: str) -> "str | None":
    """The registered model a pathway uses by default (Resources/models.json's first
    ``segmentation_models`` entry of the pathway's own task: segmentation for CTPA, cross_phase for
    non-contrast series), or None when none is registered."""
    from PETriageLib.models.zoo import read_segmentation_models

    task = PATHWAY_TASKS[pathway][0]
    return next((e["name"] for e in read_segmentation_models(task=task)), None)


def embolus_model_spec(spec: "str | None", pathway: str) -> "str | None":
    """The model a pathway is asked to use: None or 'none' for no model, 'default' for the registered
    default (an error when none of the pathway's task is registered: it was asked for, and a silent
    fallback to the CTPA cascade would hide that), else ``spec``."""
    from PETriageLib.errors import CheckpointError

    if spec is None or spec.lower() == "none":
        return None
    if spec != "default":
        return spec
    name = default_embolus_model(pathway)
    if name is None:
        task = PATHWAY_TASKS[pathway][0]
        what = "segmentation" if pathway == "ctpa" else "non-contrast"  # --seg-model / --nct-model
        raise CheckpointError(f"{what} model 'default': no {task} model is registered in Resources/models.json; "
                              "pass a checkpoint file")
    return name


def nct_verdict(cascade: PatientVerdict, embolus: EmbolusResult) -> PatientVerdict:
    """The verdict of a non-contrast series: PE exactly when the NCT model predicts an embolus
    component (docs/segmentation.md's patient rule), its max probability the PE score; the
    cascade's slice labels still say "other disease" and show where."""
    rule = "non-contrast model: any predicted embolus component"
    if embolus.found:
        verdict = "pe_suspected"
        reason = (f"non-contrast model {embolus.model}: {embolus.n_components} embolus component(s), "
                  f"{embolus.volume_ml:.1f} mL, max p {embolus.max_probability:.3f}")
    else:
        verdict = "other_disease" if cascade.disease_ranges else "no_finding"
        reason = (f"non-contrast model {embolus.model}: no embolus component at p >= {embolus.threshold:g} "
                  f"(max p {embolus.max_probability:.3f})"
                  + ("; diseased slices by the cascade" if cascade.disease_ranges else ""))
    ranges = slice_ranges(embolus.slices)
    return replace(cascade, verdict=verdict, reason=reason, rule=rule, pe_score=embolus.max_probability,
                   pe_ranges=ranges, max_pe_slice=int(np.argmax(embolus.probability.reshape(
                       embolus.probability.shape[0], -1).max(axis=1))) if embolus.probability.size else None)
