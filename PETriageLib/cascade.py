"""Two-stage slice cascade on a CTVolume: stage 1 (wnl vs disease) on every slice with lung,
stage 2 (other vs pe) on the slices stage 1 calls diseased (or on all, as an option).

Slices are streamed in batches (crop + window + model), so memory beyond the volume itself does
not grow with the series length. Progress and cancel are checked between batches.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from PETriageLib import __version__
from PETriageLib.errors import CheckpointError, PETriageError
from PETriageLib.preprocess import PreprocessConfig, centre_channels
from PETriageLib.verdict import PatientVerdict, SliceRow, label_slice, patient_verdict, series_problem
from PETriageLib.volume import CTVolume

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]

STAGE_CLASSES = {1: ["wnl", "disease"], 2: ["other", "pe"]}
# fast (default): fast_inference.FastPredictor (BN folded, channels_last, bf16 where the hardware
# has it), validated against fp32 on the first batch, fp32 if it differs by more than its tolerance.
# eager: the model as loaded, fp32 (the naive baseline). naive = eager.
INFERENCE = ("eager", "naive", "fast")


class Cancelled(PETriageError):
    """The user cancelled a triage run; nothing partial is returned."""


def is_cancelled(cancel: Any) -> bool:
    """Accept a callable, a threading.Event-like object, or a plain truthy value."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    if callable(cancel):
        return bool(cancel())
    return bool(cancel)


def select_device(requested: str = "auto", cuda_available: bool | None = None) -> "torch.device":
    """'auto' -> cuda when available else cpu; 'cuda' without CUDA falls back to cpu with a warning."""
    import torch

    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    req = (requested or "auto").lower()
    if req not in ("auto", "cpu") and not req.startswith("cuda"):
        raise ValueError(f"unknown device {requested!r}; use auto, cpu or cuda[:N]")
    if req == "cpu" or (req == "auto" and not cuda_available):
        return torch.device("cpu")
    if not cuda_available:
        log.warning("device %s requested but CUDA is not available; using the CPU", requested)
        return torch.device("cpu")
    return torch.device("cuda" if req == "auto" else req)


def default_models() -> tuple[str, str]:
    """Names of the first stage 1 and stage 2 models in Resources/models.json."""
    from PETriageLib.models.manifest import manifest_path, read_manifest

    entries = read_manifest()["models"]
    names = [next((e["name"] for e in entries if e["stage"] == n), None) for n in (1, 2)]
    if None in names:
        raise CheckpointError(f"{manifest_path()} registers no stage {names.index(None) + 1} model; "
                              "pass --models STAGE1 STAGE2 (names or checkpoint files)")
    return names[0], names[1]


@dataclass
class Stage:
    """One loaded model with what the cascade needs to feed it and to report it."""

    number: int
    model: Any  # torch.nn.Module
    meta: dict
    name: str
    sha256: str | None = None
    path: str | None = None
    domain: Any = None  # domain_check.DomainModel from the checkpoint, or None

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", 0.5))

    def identities(self) -> list[str]:
        """SHA256 of this file and of the earlier files of the same weights (before the domain
        statistics were added): series models trained on any of them read the same features."""
        return [s for s in [self.sha256, *self.meta.get("domain", {}).get("same_weights_as", [])] if s]

    def provenance(self) -> dict[str, Any]:
        m = self.meta
        return {
            "stage": self.number, "name": self.name, "path": self.path, "sha256": self.sha256,
            "architecture": m.get("architecture"), "windows": m.get("windows"),
            "input_size": m.get("input_size"), "crop": m.get("crop"), "class_names": m.get("class_names"),
            "threshold": self.threshold, "version": m.get("version"),
            "domain_threshold": None if self.domain is None else self.domain.threshold,
        }


@dataclass
class TriageResult:
    rows: list[SliceRow]
    verdict: PatientVerdict
    volume: CTVolume
    models: list[dict]
    options: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    warnings: list[str] = field(default_factory=list)
    lungs: list | None = None  # lung_crop.SliceLung per slice (reused by Grad-CAM)
    cam: dict[str, Any] = field(default_factory=dict)  # Grad-CAM stage, slices and branches, once run
    domain: dict[str, Any] | None = None  # DomainCheck.to_dict() of stage 1, None when not checked

    def series_info(self) -> dict[str, Any]:
        v = self.volume
        md = dict(v.metadata or {})
        keep = ("patient_id", "patient_name", "study_uid", "series_uid", "study_date", "series_description",
                "study_description", "modality", "manufacturer", "kernel", "contrast_agent", "slice_thickness")
        info = {k: md.get(k) for k in keep}
        info.update(shape=list(v.shape), spacing=list(map(float, v.spacing)), origin=list(map(float, v.origin)),
                    direction=np.asarray(v.direction, float).tolist(), warnings=list(v.warnings))
        return {k: (str(x) if x is not None and not isinstance(x, (int, float, str, list, bool)) else x)
                for k, x in info.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "petriage_version": __version__,
            "series": self.series_info(),
            "patient": self.verdict.to_dict(),
            "models": self.models,
            "options": self.options,
            "device": self.device,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "warnings": self.warnings,
            "domain_check": self.domain,
            "gradcam": self.cam,
            "slices": [r.to_dict() for r in self.rows],
        }


def load_stage(number: int, spec: str | Path) -> Stage:
    """A stage from a registered model name or a checkpoint path (SHA256 and class names checked)."""
    from PETriageLib.domain_check import DomainModel
    from PETriageLib.models.checkpoint import file_sha256, model_from_checkpoint, read_checkpoint
    from PETriageLib.models.manifest import resolve_model

    path, expected = resolve_model(str(spec))
    data = read_checkpoint(path, expected_sha256=expected)
    model, meta = model_from_checkpoint(data, path), data["meta"]
    classes = list(meta.get("class_names") or [])
    if classes and classes != STAGE_CLASSES[number]:
        raise CheckpointError(f"{path}: class names {classes} do not fit stage {number} "
                              f"(expected {STAGE_CLASSES[number]})")
    name = str(spec) if not Path(str(spec)).exists() else Path(path).stem
    try:
        domain = DomainModel.from_payload(data.get("domain"), meta.get("domain"))
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}; fit it again with petriage fit-domain") from None
    width = getattr(getattr(model, "fc", None), "in_features", None)
    if domain is not None and len(domain.mean) != width:
        raise CheckpointError(f"{path}: its domain statistics describe {len(domain.mean)} features, the model "
                              f"pools {width}; fit them again with petriage fit-domain")
    return Stage(number, model, meta, name=name, sha256=expected or file_sha256(path), path=str(path), domain=domain)


def _series_models(refiner: "str | Path | None", patient_model: "str | Path | None", stage1: Stage,
                   stage2: Stage) -> tuple:
    """(refiner, patient classifier, the feature kind both read): each (model, meta) or None,
    loaded only when trained on exactly these two stages."""
    if refiner is None and patient_model is None:
        return None, None, None
    from PETriageLib.patient.refine import load_slice_refiner
    from PETriageLib.patient.train import load_patient_classifier

    shas = [stage1.identities(), stage2.identities()]
    ref = None if refiner is None else load_slice_refiner(refiner, shas)
    pat = None if patient_model is None else load_patient_classifier(patient_model, shas)
    kinds = {m[1]["features"] for m in (ref, pat) if m is not None}
    if len(kinds) > 1:
        raise ValueError(f"the slice refiner and the patient classifier read different features {sorted(kinds)}; "
                         "train them on the same --features")
    return ref, pat, (kinds.pop() if kinds else None)


class Cascade:
    """Stage 1 + stage 2 models, their preprocessing, thresholds and the batch loop."""

    def __init__(self, stage1: Stage, stage2: Stage, device: str = "auto", batch_size: int = 32,
                 all_slices: bool = False, threshold_disease: float | None = None,
                 threshold_pe: float | None = None, min_run: int = 1, min_slices: int = 10,
                 inference: str = "fast", patient_model: "str | Path | None" = None,
                 refiner: "str | Path | None" = None, domain_check: str = "refuse") -> None:
        from PETriageLib.domain_check import MODES

        for st, n in ((stage1, 1), (stage2, 2)):
            if st.number != n:
                raise ValueError(f"stage {n} given a stage {st.number} model")
        if inference not in INFERENCE:
            raise ValueError(f"unknown inference path {inference!r}; use one of {', '.join(INFERENCE)}")
        if domain_check not in MODES:
            raise ValueError(f"unknown domain check {domain_check!r}; use one of {', '.join(MODES)}")
        # refuse: a series unlike stage 1's training data is not analysable; warn: only say so
        self.domain_check = domain_check
        self.inference = inference
        self._fast: dict[int, Any] = {}  # stage number -> FastPredictor, built on first use
        self.stage1, self.stage2 = stage1, stage2
        # the preprocessing each checkpoint was trained with (windows, input size, crop, margin)
        self.config1 = PreprocessConfig.from_dict(stage1.meta)
        self.config2 = PreprocessConfig.from_dict(stage2.meta)
        self.batch_size = int(batch_size)
        self.all_slices = all_slices
        # Series models (PETriageLib.patient), each (model, meta) or None: the refiner re-scores
        # each slice with its neighbours in view; the patient classifier's p(PE) decides the verdict.
        self.refiner, self.patient, self.series_features = _series_models(refiner, patient_model, stage1, stage2)
        self.refiner_path = None if refiner is None else str(refiner)
        self.patient_path = None if patient_model is None else str(patient_model)
        own = self.refiner[1] if self.refiner is not None else {"threshold_disease": stage1.threshold,
                                                                  "threshold_pe": stage2.threshold}
        self.threshold_disease = own["threshold_disease"] if threshold_disease is None else float(threshold_disease)
        self.threshold_pe = own["threshold_pe"] if threshold_pe is None else float(threshold_pe)
        self.min_run = int(min_run)
        self.min_slices = int(min_slices)
        self.device = select_device(device)
        self._to_device(self.device)

    @classmethod
    def from_checkpoints(cls, stage1: str | Path, stage2: str | Path, device: str = "auto",
                         **options: Any) -> "Cascade":
        """Build from two model names (Resources/models.json) or checkpoint paths."""
        return cls(load_stage(1, stage1), load_stage(2, stage2), device=device, **options)

    @property
    def shared_preprocessing(self) -> bool:
        """Stage 2 takes stage 1's inputs, or their centre slices when it has less slice context
        (the same crop, windows and size make those channels identical to its own preprocessing)."""
        a, b = self.config1, self.config2
        return b.context <= a.context and replace(a, context=b.context).to_dict() == b.to_dict()

    def _to_device(self, device: "Any") -> None:
        for st in (self.stage1, self.stage2):
            st.model.to(device).eval()
        self.device = device
        self._fast.clear()  # fast copies live on the old device

    def _forward(self, stage: Stage, images: np.ndarray) -> np.ndarray:
        import torch

        if self.inference == "fast":
            if stage.number not in self._fast:
                from PETriageLib.fast_inference import FastPredictor

                self._fast[stage.number] = FastPredictor(stage.model, self.device, batch_size=self.batch_size)
            return self._fast[stage.number](images)
        x = torch.from_numpy(images).to(self.device)
        return torch.sigmoid(stage.model(x).float()).reshape(-1).cpu().numpy()

    def _predict(self, stage: Stage, images: np.ndarray) -> np.ndarray:
        """Sigmoid probabilities."""
        return self._on_device(lambda: self._forward(stage, images))

    def _on_device(self, work: Callable[[], Any]) -> Any:
        """work() under inference mode; on CUDA out-of-memory move both models to the CPU and retry
        (work must read self.device when it runs)."""
        import torch

        with torch.inference_mode():
            try:
                return work()
            except torch.OutOfMemoryError:
                if self.device.type == "cpu":
                    raise
                log.warning("out of GPU memory; continuing on the CPU")
                torch.cuda.empty_cache()
                self._to_device(torch.device("cpu"))
                return work()

    def options(self) -> dict[str, Any]:
        return {"threshold_disease": self.threshold_disease, "threshold_pe": self.threshold_pe,
                "min_run": self.min_run, "all_slices": self.all_slices, "batch_size": self.batch_size,
                "min_slices": self.min_slices, "shared_preprocessing": self.shared_preprocessing,
                "inference": self.inference, "domain_check": self.domain_check,
                "patient_model": self.patient_path, "refiner": self.refiner_path,
                "fast_paths": {f"stage{n}": p.describe() for n, p in self._fast.items()}}

    def run(self, volume: CTVolume, progress: Progress | None = None, cancel: Any = None) -> TriageResult:
        """Triage one series. Raises Cancelled when ``cancel`` becomes set between batches."""
        from PETriageLib.lung_crop import analyse_lungs
        from PETriageLib.preprocess import prepare_slices

        timings = {"preprocessing": 0.0, "stage1": 0.0, "stage2": 0.0}
        t0 = time.perf_counter()
        lungs = analyse_lungs(volume, progress=(lambda d, n: progress(d, n, "lungs")) if progress else None)
        timings["preprocessing"] += time.perf_counter() - t0
        has_lung = [bool(s.has_lung) for s in lungs]
        rows = [SliceRow(index=k, z=float(volume.z_positions[k]), instance_uid=str(volume.instance_uids[k]),
                         has_lung=has_lung[k], analysable=False) for k in range(volume.num_slices)]
        problem = series_problem(volume, min_slices=self.min_slices)
        if problem is None:
            problem = self._check_chest(volume, lungs)
        features: dict[int, np.ndarray] = {}
        warnings = list(volume.warnings)
        if problem is None:
            self._run_batches(volume, lungs, rows, timings, progress, cancel, prepare_slices, features)
        domain = self._check_domain(volume, lungs, rows, timings) if problem is None else None
        if domain is not None and not domain.in_domain:
            if self.domain_check == "refuse":
                problem = domain.reason()
            else:
                warnings.append(domain.reason())
        if problem is None and self.refiner is not None and features:
            self._refine(rows, features)
        p_patient = self._patient_probability(rows, features) if problem is None else None
        verdict = patient_verdict(rows, self.threshold_disease, self.threshold_pe, self.min_run,
                                  not_analysable_reason=problem, patient_probability=p_patient,
                                  patient_threshold=None if p_patient is None else self.patient[1]["threshold"])
        return TriageResult(rows=rows, verdict=verdict, volume=volume, lungs=lungs,
                            models=[self.stage1.provenance(), self.stage2.provenance()],
                            options=self.options(), timings=timings, device=str(self.device),
                            warnings=warnings, domain=None if domain is None else domain.to_dict())

    def _check_domain(self, volume: CTVolume, lungs: list, rows: list[SliceRow], timings: dict) -> Any:
        """Stage 1's domain check (domain_check.DomainCheck) on up to MAX_SLICES analysed slices spread
        over the series; None when it is off or the checkpoint has no domain statistics."""
        from PETriageLib.domain_check import DomainCheck, pooled_features, spread
        from PETriageLib.preprocess import prepare_slices

        stats = self.stage1.domain
        idx = spread([r.index for r in rows if r.analysable])
        if self.domain_check == "off" or stats is None or not idx:
            return None
        t = time.perf_counter()
        images = prepare_slices(volume, idx, self.config1, lungs=lungs).images
        feats = self._on_device(lambda: pooled_features(self.stage1.model, images, self.batch_size, self.device))
        timings["domain_check"] = time.perf_counter() - t
        return DomainCheck(stats.series_score(feats), stats.threshold, stats.quantile, len(idx), self.stage1.name)

    @staticmethod
    def _check_chest(volume: CTVolume, lungs: list) -> str | None:
        from PETriageLib.lung_crop import check_chest

        return check_chest(volume, lungs)

    @staticmethod
    def _series(rows: list[SliceRow], features: dict[int, np.ndarray]) -> "tuple[list[SliceRow], Any]":
        """The analysed rows, and their features as one series for the series models."""
        from PETriageLib.patient.series import PatientSeries

        done = [r for r in rows if r.index in features]
        return done, PatientSeries("", "unknown", np.stack([features[r.index] for r in done]), [])

    def _patient_probability(self, rows: list[SliceRow], features: dict[int, np.ndarray]) -> float | None:
        """The patient classifier's p(PE) over the analysed slices in order; None without one."""
        if self.patient is None or not features:
            return None
        from PETriageLib.patient.train import predict_series

        return float(predict_series(self.patient[0], [self._series(rows, features)[1]])[0])

    def _refine(self, rows: list[SliceRow], features: dict[int, np.ndarray]) -> None:
        """Replace the analysed rows' probabilities by the refiner's, and label them again."""
        from PETriageLib.patient.refine import refine_series

        done, series = self._series(rows, features)
        for r, (p1, p2) in zip(done, refine_series(self.refiner[0], [series])[0]):
            r.p_disease = float(p1)
            r.p_pe = float(p2) if self.all_slices or p1 >= self.threshold_disease else None
            r.label = label_slice(r.p_disease, r.p_pe, self.threshold_disease, self.threshold_pe)

    def _stage_outputs(self, images1: np.ndarray, images2: np.ndarray, timings: dict
                       ) -> "tuple[np.ndarray, np.ndarray, np.ndarray]":
        """With a series model: both stages on every slice, with their features. (p_disease, p_pe,
        features). Logits alone (``scores``) come from the chosen inference path; pooled features
        need the eager model."""
        from PETriageLib.patient.features import stage_features

        kind = self.series_features
        out = []
        for st, images in ((self.stage1, images1), (self.stage2, images2)):
            t = time.perf_counter()
            if kind == "scores":  # p clipped so that the logit stays finite where bf16 rounds p to 1
                p = np.clip(self._predict(st, images).astype(np.float64), 1e-7, 1 - 1e-7)
                out.append(np.log(p / (1 - p))[:, None].astype(np.float32))
            else:
                out.append(stage_features(st.model, images, kind, self.batch_size, self.device))
            timings[f"stage{st.number}"] += time.perf_counter() - t
        p1, p2 = (1 / (1 + np.exp(-f[:, 0].astype(np.float64))) for f in out)
        return p1, p2, np.concatenate(out, axis=1)

    def _stage2_images(self, volume: CTVolume, lungs: list, idx: list[int], images1: np.ndarray,
                       timings: dict, prepare_slices: Callable) -> np.ndarray:
        """Stage 2's inputs for slices idx, from stage 1's when the preprocessing is shared."""
        if not self.shared_preprocessing:
            t = time.perf_counter()
            images = prepare_slices(volume, idx, self.config2, lungs=lungs).images
            timings["preprocessing"] += time.perf_counter() - t
            return images
        if self.config2.context < self.config1.context:
            return centre_channels(images1, len(self.config1.windows), self.config1.context, self.config2.context)
        return images1

    def _run_batches(self, volume: CTVolume, lungs: list, rows: list[SliceRow], timings: dict,
                     progress: Progress | None, cancel: Any, prepare_slices: Callable,
                     features: dict[int, np.ndarray]) -> None:
        todo = [r.index for r in rows if r.has_lung]
        total = len(todo)
        if progress:
            progress(0, total, "stage 1")
        for start in range(0, total, self.batch_size):
            if is_cancelled(cancel):
                raise Cancelled(f"triage cancelled after {start} of {total} slices")
            idx = todo[start:start + self.batch_size]
            t = time.perf_counter()
            prep = prepare_slices(volume, idx, self.config1, lungs=lungs)
            timings["preprocessing"] += time.perf_counter() - t
            if self.series_features is not None:
                images2 = self._stage2_images(volume, lungs, idx, prep.images, timings, prepare_slices)
                p1, p2_all, feats = self._stage_outputs(prep.images, images2, timings)
                features.update(zip(idx, feats))
                # the rows keep the cascade's meaning: p_pe only where stage 1 passes
                p2 = np.where(self.all_slices | (p1 >= self.threshold_disease), p2_all, np.nan)
            else:
                t = time.perf_counter()
                p1 = self._predict(self.stage1, prep.images)
                timings["stage1"] += time.perf_counter() - t
                sel = [i for i, p in enumerate(p1) if self.all_slices or p >= self.threshold_disease]
                p2 = np.full(len(idx), np.nan)
                if sel:
                    images = self._stage2_images(volume, lungs, [idx[i] for i in sel], prep.images[sel], timings,
                                                 prepare_slices)
                    t = time.perf_counter()
                    p2[sel] = self._predict(self.stage2, images)
                    timings["stage2"] += time.perf_counter() - t
            for i, k in enumerate(idx):
                r = rows[k]
                r.analysable = True
                r.p_disease = float(p1[i])
                r.p_pe = None if np.isnan(p2[i]) else float(p2[i])
                r.label = label_slice(r.p_disease, r.p_pe, self.threshold_disease, self.threshold_pe)
            if progress:
                progress(min(start + self.batch_size, total), total, "stage 1 + stage 2")

    def heatmaps(self, result: TriageResult, slices: Sequence[int], stage: int = 2, batch_size: int = 4,
                 progress: Progress | None = None, cancel: Any = None) -> dict[str, np.ndarray]:
        """Grad-CAM volumes (one per branch) of ``stage``'s positive class on the chosen slices."""
        from PETriageLib.gradcam import heatmap_volume

        st, cfg = (self.stage2, self.config2) if stage == 2 else (self.stage1, self.config1)
        t = time.perf_counter()
        vols = heatmap_volume(st.model, result.volume, list(slices), cfg, lungs=result.lungs,
                              batch_size=batch_size, progress=progress, cancel=cancel)
        result.timings["gradcam"] = result.timings.get("gradcam", 0.0) + time.perf_counter() - t
        result.cam = {"stage": stage, "model": st.name, "target": st.meta.get("class_names", ["", "positive"])[-1],
                      "slices": [int(k) for k in slices], "branches": list(vols)}
        return vols
