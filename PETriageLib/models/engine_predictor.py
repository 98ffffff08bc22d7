"""Slice probabilities from ONNX Runtime (fp32 or int8), checked against eager fp32 torch, with
torch's fast path as the fall-back.

Like ``FastPredictor``: the first slices it sees (up to ``VALIDATE_SLICES``, over the first
calls) also go through the eager fp32 model; the engine is kept only while its largest
probability difference is within the tolerance AND every label (p >= 0.5) agrees. Otherwise,
or when ONNX Runtime is missing or the export fails, it logs the reason and hands every call
to a ``FastPredictor`` on the same model.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from PETriageLib.models.fast import (
    DEFAULT_TOLERANCE,
    VALIDATE_SLICES,
    FastPredictor,
    Validation,
    _merge,
    compare_probabilities,
    torch_sigmoid_numpy,
)

log = logging.getLogger(__name__)

VARIANTS = ("fp32", "int8")


def engine_validation_passed(v: Validation) -> bool:
    """Within the tolerance, and the same label on every slice."""
    return bool(v.passed and v.label_agreement >= 1.0)


class EnginePredictor:
    """``predictor(images)`` -> float32 (N,) probabilities, on ONNX Runtime when it checks out."""

    def __init__(self, model: Any, sha256: str, input_size: int, variant: str = "fp32",
                 calibration: np.ndarray | None = None, cache_dir: str | Path | None = None,
                 tolerance: float = DEFAULT_TOLERANCE, batch_size: int = 16, threads: int | None = None) -> None:
        import torch

        if variant not in VARIANTS:
            raise ValueError(f"engine variant must be one of {VARIANTS}, got {variant!r}")
        self.device = torch.device("cpu")
        self.reference = model.eval().to(self.device)
        self.tolerance = float(tolerance)
        self.batch_size = int(batch_size)
        self.threads = threads or torch.get_num_threads()
        self.variant = variant
        self.validation: Validation | None = None
        self.fallback = False
        self.reason: str | None = None
        self.torch: FastPredictor | None = None
        self.session: Any = None
        self.engine_file: Any = None
        self.mode = f"onnxruntime-{variant}"
        try:
            self._open(sha256, input_size, calibration, cache_dir)
        except Exception as exc:  # a missing engine or a failed export: torch does the work
            self._to_torch(f"{type(exc).__name__}: {exc}")

    def _open(self, sha256: str, input_size: int, calibration: np.ndarray | None,
              cache_dir: str | Path | None) -> None:
        from PETriageLib.models.onnx_engine import OnnxSession, engine_problem, exported, quantized

        problem = engine_problem()
        if problem:
            raise RuntimeError(problem)
        if not sha256:
            raise ValueError("no checkpoint SHA256 to key the exported graph by")
        engine = exported(self.reference, sha256, int(input_size), cache_dir)
        if self.variant == "int8":
            if calibration is None or not len(calibration):
                raise ValueError("int8 needs calibration slices")
            engine = quantized(engine, calibration)
        self.engine_file = engine
        self.session = OnnxSession(engine.path, self.threads)

    def _to_torch(self, why: str) -> None:
        log.warning("ONNX Runtime %s not used (%s); using torch's fast path", self.variant, why)
        self.reason = why
        self.fallback = True
        self.session = None
        self.torch = FastPredictor(self.reference, self.device, tolerance=self.tolerance, batch_size=self.batch_size)
        self.mode = self.torch.mode

    def _engine_probs(self, images: np.ndarray) -> np.ndarray:
        out = [self.session(images[s:s + self.batch_size]) for s in range(0, len(images), self.batch_size)]
        return 1.0 / (1.0 + np.exp(-np.concatenate(out).reshape(-1).astype(np.float64)))

    def _reference_probs(self, images: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return torch_sigmoid_numpy(self.reference(torch.as_tensor(images, dtype=torch.float32)))

    def validate(self, images: np.ndarray) -> Validation:
        """Compare with eager fp32 on ``images`` (added to the slices already compared); fall back
        to torch when the difference or a label disagreement rules the engine out."""
        if self.torch is not None:
            return self.torch.validate(images)
        images = np.asarray(images, dtype=np.float32)
        v = compare_probabilities(self._engine_probs(images).astype(np.float32), self._reference_probs(images),
                                  self.tolerance, self.mode)
        self.validation = _merge(self.validation, v) if self.validation else v
        if engine_validation_passed(self.validation):
            log.info("%s within %.4f of fp32 (max |dp| %.5f, labels agree on %d slices)", self.mode,
                     self.tolerance, self.validation.max_abs_dp, self.validation.n)
        else:
            checked = self.validation
            self._to_torch(f"max |p - p_fp32| {checked.max_abs_dp:.4f} (tolerance {self.tolerance}), label "
                           f"agreement {checked.label_agreement:.3f} on {checked.n} slices")
            self.validation = checked
        return self.validation

    def logits(self, images: Any) -> Any:
        """(N, 1) fp32 logits as a torch tensor (what the benchmarks time)."""
        import torch

        if self.torch is not None:
            return self.torch.logits(images)
        x = images.numpy() if isinstance(images, torch.Tensor) else images
        return torch.from_numpy(self.session(x))

    def __call__(self, images: Any) -> np.ndarray:
        if self.torch is not None:
            return self.torch(images)
        seen = self.validation.n if self.validation else 0
        if seen < VALIDATE_SLICES and len(images):
            self.validate(np.asarray(images[:VALIDATE_SLICES - seen], dtype=np.float32))
            if self.torch is not None:
                return self.torch(images)
        images = np.asarray(images, dtype=np.float32)
        if not len(images):
            return np.zeros(0, np.float32)
        return self._engine_probs(images).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        out = {"mode": self.mode, "engine": f"onnxruntime-{self.variant}", "fallback": self.fallback,
               "reason": self.reason, "tolerance": self.tolerance, "device": "cpu", "threads": self.threads,
               "batch_size": self.batch_size,
               "engine_file": str(self.engine_file.path) if self.engine_file else None,
               "validation": self.validation.to_dict() if self.validation else None}
        if self.torch is not None:
            out["torch"] = self.torch.describe()
        return out
