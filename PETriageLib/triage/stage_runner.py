"""Where the two stage models run: device choice, the inference path (fast or eager), pooled
features for the series models and the domain check, and the fall-back to the CPU when the GPU
runs out of memory. The cascade asks it for numbers and never touches a device itself."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from PETriageLib.triage.stages import Stage
from PETriageLib.vocabulary import ENGINE_ALIASES, ENGINE_CHOICES

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


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


def choose_engine(requested: str, device: "torch.device") -> tuple[str, str]:
    """(engine, why) for the fast path; ``requested`` one of ENGINE_CHOICES or ENGINE_ALIASES. ``auto``: torch on a GPU and on a CPU with bf16 (torch's bf16
    path measured faster than ONNX Runtime fp32 there, docs/benchmarks.md), else ONNX Runtime when it
    is installed (fp32 on AVX2-only CPUs), else torch. ONNX Runtime runs on the CPU only."""
    from PETriageLib.models.fast import bf16_supported
    from PETriageLib.models.onnx_engine import engine_problem

    requested = ENGINE_ALIASES.get(requested, requested)
    if device.type != "cpu":
        return "torch", f"{device.type} device" + (" (ONNX Runtime runs on the CPU only)" if requested == "onnx" else "")
    if requested == "torch":
        return "torch", "requested"
    if requested == "onnx":
        problem = engine_problem()
        return ("torch", f"ONNX Runtime unavailable: {problem}") if problem else ("onnx", "requested")
    if bf16_supported(device):  # asked first: importing ONNX Runtime only to not use it costs memory
        return "torch", "auto: the CPU has bf16, torch's bf16 path is the faster"
    problem = engine_problem()
    if problem:
        return "torch", f"auto: ONNX Runtime unavailable ({problem})"
    return "onnx", "auto: the CPU has no bf16, ONNX Runtime fp32 is the faster"


class StageRunner:
    """Stage 1 and stage 2 on one device, on one inference path.

    ``engine="onnx"`` (or its older name "onnxruntime") runs the fast path on ONNX Runtime on the
    CPU (models.engine_predictor: exported once per checkpoint, checked against fp32, torch when it
    is missing or differs);
    on a GPU, and with ``engine="torch"``, the fast path is torch's (models.fast)."""

    def __init__(self, stage1: Stage, stage2: Stage, device: str = "auto", inference: str = "fast",
                 batch_size: int = 16, engine: str = "auto") -> None:
        for st, n in ((stage1, 1), (stage2, 2)):
            if st.number != n:
                raise ValueError(f"stage {n} given a stage {st.number} model")
        engine = ENGINE_ALIASES.get(engine, engine)
        if engine not in ENGINE_CHOICES:
            raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINE_CHOICES)}")
        self.stage1, self.stage2 = stage1, stage2
        self.inference = inference
        self.requested_engine = engine
        self.batch_size = int(batch_size)
        self._fast: dict[int, Any] = {}  # stage number -> FastPredictor, built on first use
        self.to_device(select_device(device))

    def to_device(self, device: Any) -> None:
        for st in (self.stage1, self.stage2):
            st.model.to(device).eval()
        self.device = device
        self._fast.clear()  # fast copies live on the old device
        self.engine, self.engine_reason = choose_engine(self.requested_engine, device)
        if self.requested_engine == "onnx" and self.engine != "onnx":
            log.warning("engine onnx requested, using torch: %s", self.engine_reason)

    def fast_predictors(self) -> dict[int, Any]:
        """The fast predictor of each stage that has run (stage number -> predictor)."""
        return dict(self._fast)

    def fast_paths(self) -> dict[str, Any]:
        """What each stage's fast path turned out to be (after its first batch)."""
        paths = {f"stage{n}": p.describe() for n, p in self._fast.items()}
        if self.inference == "fast":
            paths["engine"] = {"requested": self.requested_engine, "used": self.engine, "why": self.engine_reason}
        return paths

    def probabilities(self, stage: Stage, images: np.ndarray) -> np.ndarray:
        """Sigmoid probabilities (N,) of preprocessed slices."""
        return self.on_device(lambda: self._forward(stage, images))

    def logits(self, stage: Stage, images: np.ndarray) -> np.ndarray:
        """(N, 1) logits from the chosen path's probabilities, clipped so that they stay finite
        where bf16 rounds p to 1."""
        p = np.clip(self.probabilities(stage, images).astype(np.float64), 1e-7, 1 - 1e-7)
        return np.log(p / (1 - p))[:, None].astype(np.float32)

    def features(self, stage: Stage, images: np.ndarray, kind: str) -> np.ndarray:
        """(N, F) slice features of ``kind`` (models.features), the logit first; ``scores`` come
        from the chosen inference path, pooled features need the eager model."""
        if kind == "scores":
            return self.logits(stage, images)
        from PETriageLib.models.features import stage_features

        return self.on_device(lambda: stage_features(stage.model, images, kind, self.batch_size, self.device))

    def pooled(self, stage: Stage, images: np.ndarray) -> np.ndarray:
        """(N, D) pooled branch features (what the domain statistics describe)."""
        from PETriageLib.models.domain_stats import pooled_features

        return self.on_device(lambda: pooled_features(stage.model, images, self.batch_size, self.device))

    def _forward(self, stage: Stage, images: np.ndarray) -> np.ndarray:
        import torch

        if self.inference == "fast":
            if stage.number not in self._fast:
                self._fast[stage.number] = self._fast_predictor(stage)
            return self._fast[stage.number](images)
        x = torch.from_numpy(images).to(self.device)
        return torch.sigmoid(stage.model(x).float()).reshape(-1).cpu().numpy()

    def _fast_predictor(self, stage: Stage) -> Any:
        if self.engine == "onnx":
            from PETriageLib.models.engine_predictor import EnginePredictor

            return EnginePredictor(stage.model, stage.sha256 or "", int(stage.meta.get("input_size", 0)),
                                   batch_size=self.batch_size)
        from PETriageLib.models.fast import FastPredictor

        return FastPredictor(stage.model, self.device, batch_size=self.batch_size)

    def on_device(self, work: Callable[[], Any]) -> Any:
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
                self.to_device(torch.device("cpu"))
                return work()
