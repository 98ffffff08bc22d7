"""Fast inference for a loaded slice classifier, checked against eager fp32.

The fast path: an eval-mode copy with every BatchNorm folded into the convolution before it,
channels_last memory layout, bfloat16 weights and activations where the CPU (AVX512-BF16/AMX)
or GPU supports them, the attention gates (CBAM/FUSA: sigmoid gates multiply every feature)
and the fusion head optionally kept in fp32, optional ``torch.compile`` with the last batch padded to a
fixed shape (a new shape recompiles). Before its first prediction a ``FastPredictor`` runs
eager fp32 and the candidate paths (bf16 everywhere, then bf16 with fp32 gates) on the same
inputs and keeps the first whose largest probability difference is within the tolerance;
if none is, it falls back to fp32 (still BN-folded, which is exact to rounding).
"""
from __future__ import annotations

import copy
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 0.02  # largest |p_fast - p_fp32| accepted (probabilities in [0, 1])
VALIDATE_SLICES = 8  # first slices checked against fp32 (costs one fp32 pass over them)


@dataclass
class FastOptions:
    """Which optimisations to try. ``bf16=None`` means: when the device supports it."""

    fold_bn: bool = True
    channels_last: bool = True
    bf16: bool | None = None
    fp32_gates: bool | None = None  # None: try bf16 everywhere first, then gates in fp32 (FastPredictor)
    compile: bool = False
    pad_batches: bool | None = None  # None: pad when compiled
    threads: int | None = None  # None: leave torch's setting (one per physical core)
    fuse_branches: bool = False  # window branches as one grouped network (models.fused_branches)
    # Each CPU thread runs its own part of every batch with one intra-op thread (a core per part)
    # instead of all threads sharing each layer: at width 0.25 a layer is too small to split well.
    # None or True: on a CPU with two or more threads, never when compiled or padding batches.
    split_batch: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


NAIVE = FastOptions(fold_bn=False, channels_last=False, bf16=False, fp32_gates=False, compile=False, split_batch=False)


@dataclass
class Validation:
    """Fast path vs eager fp32 on the same inputs."""

    n: int
    max_abs_dp: float
    mean_abs_dp: float
    label_agreement: float  # fraction of slices on the same side of 0.5
    tolerance: float
    passed: bool
    mode: str  # the path that was checked

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bf16_supported(device: Any) -> bool:
    """bfloat16 is fast here: a CUDA device with bf16, or a CPU with AVX512-BF16 or AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    return _cpu_has_bf16()


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:  # not Linux: ask oneDNN via torch's capability string
        return "AVX512" in str(torch.backends.cpu.get_cpu_capability())
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fold_batchnorm(model: Any) -> Any:
    """Fold each eval-mode BatchNorm2d into the Conv2d that feeds it, in place; returns the model.

    Finds the two patterns the PETriage and torchvision models use: adjacent (Conv2d,
    BatchNorm2d) in an ``nn.Sequential``, and sibling attributes ``convN`` / ``bnN``.
    The BatchNorm is replaced by Identity. Other BatchNorms are left as they are.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs an eval-mode model (running statistics)")
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:]):
                conv, bn = module._modules[a], module._modules[b]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module._modules[a] = fuse_conv_bn_eval(conv, bn)
                    module._modules[b] = nn.Identity()
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Conv2d) and name.startswith("conv"):
                bn = getattr(module, "bn" + name[4:], None)
                if isinstance(bn, nn.BatchNorm2d):
                    setattr(module, name, fuse_conv_bn_eval(child, bn))
                    setattr(module, "bn" + name[4:], nn.Identity())
    return model


class Float32Module(nn.Module):
    """Runs ``inner`` in fp32 (weights and input) inside a bf16 model; returns the input's dtype."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.float()).to(x.dtype)


class CastInput(nn.Module):
    """Casts the fp32 input to the model's dtype (and channels_last); returns fp32 logits."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype, channels_last: bool) -> None:
        super().__init__()
        self.inner = inner
        self.dtype = dtype
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.inner(x).float()


def _fp32_parts(model: Any) -> list[tuple[Any, str]]:
    """(parent, attribute) of modules that stay fp32 in a bf16 model: attention gates, the head."""
    from PETriageLib.models.attention import CBAM, FUSA
    from PETriageLib.models.fused_branches import GroupedCBAM

    parts = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, (CBAM, FUSA, GroupedCBAM)):
                parts.append((parent, name))
    if isinstance(getattr(model, "fc", None), nn.Linear):
        parts.append((model, "fc"))
    return parts


def optimize_model(model: Any, device: Any = "cpu", options: FastOptions | None = None) -> tuple[Any, str]:
    """An optimised eval copy of ``model`` on ``device`` and a short description of the path.

    The input model is not changed. The copy expects fp32 input; it casts inside.
    """
    options = options or FastOptions()
    device = torch.device(device)
    fast = copy.deepcopy(model).eval().to(device)
    for p in fast.parameters():
        p.requires_grad_(False)
    steps = []
    if options.fuse_branches:
        from PETriageLib.models.fused_branches import CannotFuse, fuse_branches

        try:
            fast = fuse_branches(fast)
            steps.append("fused")
        except CannotFuse as exc:
            log.info("window branches kept sequential: %s", exc)
    if options.fold_bn:
        fold_batchnorm(fast)
        steps.append("fold_bn")
    use_bf16 = bf16_supported(device) if options.bf16 is None else bool(options.bf16)
    if use_bf16:
        if options.fp32_gates:  # None counts as False here; FastPredictor tries both
            for parent, name in _fp32_parts(fast):
                setattr(parent, name, Float32Module(getattr(parent, name)))
            steps.append("fp32_gates")
        _bf16_except_fp32(fast)
        steps.append("bf16")
    if options.channels_last:
        fast = fast.to(memory_format=torch.channels_last)
        steps.append("channels_last")
    fast = CastInput(fast, torch.bfloat16 if use_bf16 else torch.float32, options.channels_last)
    if options.compile:
        fast = torch.compile(fast, dynamic=False)
        steps.append("compile")
    return fast, "+".join(steps) or "fp32"


def _bf16_except_fp32(model: Any) -> Any:
    """Cast parameters and buffers to bf16, except inside fp32-wrapped modules."""
    keep = {id(t) for m in model.modules() if isinstance(m, Float32Module)
            for t in list(m.parameters()) + list(m.buffers())}
    for m in model.modules():
        for name, p in list(m._parameters.items()):
            if p is not None and id(p) not in keep and p.is_floating_point():
                m._parameters[name] = torch.nn.Parameter(p.detach().to(torch.bfloat16), requires_grad=False)
        for name, b in list(m._buffers.items()):
            if b is not None and id(b) not in keep and b.is_floating_point():
                m._buffers[name] = b.to(torch.bfloat16)
    return model


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (None: keep); returns the number in use."""
    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


_PART_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_PART_POOLS_LOCK = threading.Lock()


def part_pool(parts: int) -> ThreadPoolExecutor:
    """``parts`` threads with one intra-op thread each, shared by every predictor of this process
    (keyed by the pid too: a forked child does not inherit its parent's threads)."""
    key = (os.getpid(), parts)
    with _PART_POOLS_LOCK:
        if key not in _PART_POOLS:
            _PART_POOLS[key] = _started_pool(parts)
        return _PART_POOLS[key]


def _started_pool(parts: int) -> ThreadPoolExecutor:
    """A pool whose every thread has set its own intra-op threads to one. A thread takes torch's
    process-wide default on its first parallel call, and set_num_threads sets that default too:
    so each thread first makes that call, then sets one, and all wait for each other (every
    thread is started now, none later at the default); then the caller's default comes back."""
    threads = torch.get_num_threads()
    pool = ThreadPoolExecutor(parts, thread_name_prefix="petriage-part")
    ready = threading.Barrier(parts)

    def settle() -> None:
        torch.get_num_threads()  # the thread's first parallel call: it takes the default now
        torch.set_num_threads(1)
        ready.wait()

    try:
        for done in [pool.submit(settle) for _ in range(parts)]:
            done.result()
    finally:
        torch.set_num_threads(threads)
    return pool


def run_in_parts(module: Any, x: Any, parts: int) -> Any:
    """``module(x)`` with the batch cut into ``parts`` pieces run side by side, one core each."""
    if threading.current_thread().name.startswith("petriage-part"):
        return module(x)  # already in a part: waiting on the pool from inside it could deadlock

    def run(chunk: Any) -> Any:
        with torch.inference_mode():  # grad mode is per thread
            return module(chunk)

    return torch.cat(list(part_pool(parts).map(run, x.chunk(min(parts, x.shape[0])))))


def compare(fast: Callable[[Any], Any], reference: Callable[[Any], Any], images: np.ndarray,
            tolerance: float = DEFAULT_TOLERANCE, batch_size: int = 16, mode: str = "fast") -> Validation:
    """Run both logit functions on ``images`` (N, C, H, W) and compare sigmoid probabilities."""
    return compare_probabilities(_probabilities(fast, images, batch_size),
                                 _probabilities(reference, images, batch_size), tolerance, mode)


def compare_probabilities(pf: np.ndarray, pr: np.ndarray, tolerance: float = DEFAULT_TOLERANCE,
                          mode: str = "fast") -> Validation:
    """Fast-path probabilities ``pf`` against fp32 ones ``pr`` (NaN or inf fail)."""
    dp = np.abs(pf - pr)
    max_dp = float(dp.max()) if dp.size else 0.0
    if not np.isfinite(pf).all():
        max_dp = float("inf")
    agree = float(np.mean((pf >= 0.5) == (pr >= 0.5))) if dp.size else 1.0
    return Validation(n=int(len(pf)), max_abs_dp=max_dp, mean_abs_dp=float(dp.mean()) if dp.size else 0.0,
                      label_agreement=agree, tolerance=float(tolerance), passed=max_dp <= tolerance, mode=mode)


def _merge(a: Validation, b: Validation) -> Validation:
    """One Validation over the slices of ``a`` and ``b`` (same path)."""
    n = a.n + b.n
    return Validation(n=n, max_abs_dp=max(a.max_abs_dp, b.max_abs_dp),
                      mean_abs_dp=(a.mean_abs_dp * a.n + b.mean_abs_dp * b.n) / max(n, 1),
                      label_agreement=(a.label_agreement * a.n + b.label_agreement * b.n) / max(n, 1),
                      tolerance=b.tolerance, passed=a.passed and b.passed, mode=b.mode)


def _probabilities(fn: Callable[[Any], Any], images: np.ndarray, batch_size: int) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for s in range(0, len(images), batch_size):
            x = torch.as_tensor(np.ascontiguousarray(images[s:s + batch_size]), dtype=torch.float32)
            out.append(torch.sigmoid(fn(x).float()).reshape(-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


class FastPredictor:
    """Probabilities of a slice classifier on the fastest validated path.

    ``model`` itself (set to eval mode and moved to ``device``) is the fp32 reference; the
    fast path runs on an optimised copy.

    ``predictor(images)`` takes float32 (N, C, H, W) numpy or torch input and returns float32
    (N,) sigmoid probabilities. The first call (or ``validate``) checks the candidate paths
    against eager fp32, keeps the first one within ``tolerance`` and falls back to fp32 when
    none is; later calls go on checking until ``VALIDATE_SLICES`` slices have been compared.
    """

    def __init__(self, model: Any, device: Any = "cpu", options: FastOptions | None = None,
                 tolerance: float = DEFAULT_TOLERANCE, batch_size: int = 16) -> None:
        self.device = torch.device(device)
        self.options = options or FastOptions()
        self.tolerance = float(tolerance)
        self.batch_size = int(batch_size)
        self.threads = set_threads(self.options.threads) if self.device.type == "cpu" else None
        self.reference = model.eval().to(self.device)  # eager fp32, shared with the caller
        self.model, self.mode = optimize_model(model, self.device, self.options)
        pad = self.options.pad_batches
        self.pad_batches = self.options.compile if pad is None else bool(pad)
        # compiled graphs are traced for whole (padded) batches: parts would recompile for each shape
        split = self.options.split_batch is not False and not self.options.compile and not self.pad_batches
        self.parts = self.threads if split and self.device.type == "cpu" and (self.threads or 1) > 1 else 1
        self.validation: Validation | None = None
        self.fallback = False

    def _device_fn(self, module: Any) -> Callable[[Any], Any]:
        def run(x: Any) -> Any:
            return module(x.to(self.device))
        return run

    def _fast_fn(self) -> Callable[[Any], Any]:
        """The chosen path as it predicts: in parts side by side where ``parts`` > 1."""
        if self.parts > 1:
            return lambda x: run_in_parts(self.model, x, self.parts)
        return self._device_fn(self.model)

    def candidates(self) -> list[FastOptions]:
        """Paths to try, fastest first: bf16 everywhere, then bf16 with fp32 gates (when not fixed)."""
        if self.options.fp32_gates is not None:
            return [self.options]
        return [replace(self.options, fp32_gates=False), replace(self.options, fp32_gates=True)]

    def validate(self, images: np.ndarray) -> Validation:
        """Compare with eager fp32 on ``images``: keep the first candidate path within the
        tolerance, else switch to fp32 (BN-folded, which is exact to rounding)."""
        reference = _probabilities(self._device_fn(self.reference), images, self.batch_size)
        tried = []
        for i, options in enumerate(self.candidates()):
            if i > 0:
                self.model, self.mode = optimize_model(self.reference, self.device, options)
            v = compare_probabilities(_probabilities(self._fast_fn(), images, self.batch_size),
                                      reference, self.tolerance, self.mode)
            self.validation = v
            if v.passed:
                log.info("fast path %s within %.4f of fp32 (max |dp| %.5f on %d slices)",
                         self.mode, self.tolerance, v.max_abs_dp, v.n)
                return v
            tried.append(f"{self.mode}: {v.max_abs_dp:.4f}")
            if self.mode in ("fp32", "fold_bn"):
                return v  # already the fp32 path: nothing left to fall back to
        self._use_fp32(f"{len(images)} slices ({'; '.join(tried)})")
        return self.validation

    def _top_up(self, images: np.ndarray) -> Validation:
        """Check more slices on the path already chosen; fp32 from here on if they differ too much."""
        v = compare(self._fast_fn(), self._device_fn(self.reference), images, self.tolerance,
                    self.batch_size, self.mode)
        self.validation = _merge(self.validation, v) if self.validation else v
        if not v.passed:
            self._use_fp32(f"{v.n} more slices ({self.mode}: {v.max_abs_dp:.4f})")
        return self.validation

    def _use_fp32(self, why: str) -> None:
        log.warning("fast path differs from fp32 by more than %.4f on %s; using fp32", self.tolerance, why)
        fp32 = FastOptions(fold_bn=self.options.fold_bn, channels_last=False, bf16=False, compile=False)
        self.model, self.mode = optimize_model(self.reference, self.device, fp32)
        self.pad_batches = False
        self.fallback = True

    def logits(self, images: Any) -> Any:
        """fp32 (N, 1) logits; the input is padded to ``batch_size`` when ``pad_batches``."""
        x = torch.as_tensor(images, dtype=torch.float32)
        n = x.shape[0]
        with torch.inference_mode():
            if self.pad_batches and n < self.batch_size:
                pad = x.new_zeros((self.batch_size - n,) + tuple(x.shape[1:]))
                return self.model(torch.cat([x, pad]).to(self.device))[:n]
            return self._fast_fn()(x)

    def __call__(self, images: Any) -> np.ndarray:
        # The first calls may bring few slices (stage 2 sees only the diseased ones): keep
        # checking against fp32 until VALIDATE_SLICES slices have been compared.
        seen = self.validation.n if self.validation else 0
        if seen < VALIDATE_SLICES and not self.fallback and len(images):
            chunk = np.asarray(images[:VALIDATE_SLICES - seen], dtype=np.float32)
            if self.validation is None:
                self.validate(chunk)
            else:
                self._top_up(chunk)
        out = []
        for s in range(0, len(images), self.batch_size):
            out.append(torch_sigmoid_numpy(self.logits(images[s:s + self.batch_size])))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "fallback": self.fallback, "tolerance": self.tolerance,
                "device": str(self.device), "threads": self.threads, "parts": self.parts, "batch_size": self.batch_size,
                "validation": self.validation.to_dict() if self.validation else None}


def torch_sigmoid_numpy(logits: Any) -> np.ndarray:
    return torch.sigmoid(logits.float()).reshape(-1).cpu().numpy().astype(np.float32)


def naive_predictor(model: Any, device: Any = "cpu", batch_size: int = 16) -> FastPredictor:
    """The baseline: eval-mode eager fp32, default layout, no folding."""
    p = FastPredictor(model, device, NAIVE, tolerance=0.0, batch_size=batch_size)
    p.validation = Validation(0, 0.0, 0.0, 1.0, 0.0, True, p.mode)  # it is the reference
    return p
