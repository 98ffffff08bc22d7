"""What this machine can do at best: the sustained throughput of one large 3x3 convolution, in
fp32, bf16 (where the CPU has it) and int8, on torch (oneDNN) and on ONNX Runtime, this run.

A model's slices/s times its FLOPs per slice, divided by this limit in the same precision, says
how much of the machine it uses. FLOPs are counted by torch.utils.flop_counter (a multiply-add
counts 2, as for the limit).
"""
from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

# The probe: 128 -> 128 channels, 3x3, 56 x 56, batch 8 (7.4 GFLOP a call): large enough that
# the kernels run at their sustained rate, small enough for a few calls a second on 2 cores.
PROBE = {"batch": 8, "channels": 128, "size": 56}


@dataclass
class MachineLimit:
    """Best GFLOP/s (int8: GOP/s) reached on the probe convolution, per precision and engine."""

    fp32: float
    bf16: float | None
    int8: float | None
    engines: dict[str, float] = field(default_factory=dict)  # "torch-fp32": GFLOP/s, ...
    probe: dict[str, int] = field(default_factory=lambda: dict(PROBE))
    threads: int = 1

    def for_precision(self, precision: str) -> float | None:
        return {"fp32": self.fp32, "bf16": self.bf16, "int8": self.int8}.get(precision)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe_flops(batch: int, channels: int, size: int) -> float:
    return 2.0 * batch * channels * channels * 9 * size * size


def model_flops(model: Any, in_channels: int, input_size: int) -> float:
    """FLOPs of one slice through ``model`` (eval, fp32), counted on a batch of 2."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(2, in_channels, input_size, input_size)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.eval()(x)
    return counter.get_total_flops() / 2.0


def _best_rate(call: Callable[[], Any], flops: float, repeats: int, min_time_s: float) -> float:
    """flops / the fastest of at least ``repeats`` calls (and ``min_time_s``), after one warm-up."""
    call()
    best = math.inf
    start, n = time.perf_counter(), 0
    while n < max(1, repeats) or time.perf_counter() - start < min_time_s:
        t = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t)
        n += 1
    return flops / best / 1e9


def torch_conv_rate(dtype: str = "fp32", repeats: int = 3, min_time_s: float = 0.5,
                    probe: dict[str, int] = PROBE) -> float:
    """GFLOP/s of the probe convolution on torch (channels_last, oneDNN) in ``dtype``."""
    import torch

    torch.manual_seed(0)
    b, c, s = probe["batch"], probe["channels"], probe["size"]
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    conv = torch.nn.Conv2d(c, c, 3, padding=1).eval().to(dt).to(memory_format=torch.channels_last)
    x = torch.randn(b, c, s, s).to(dt).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return _best_rate(lambda: conv(x), probe_flops(b, c, s), repeats, min_time_s)


def onnx_conv_rates(repeats: int = 3, min_time_s: float = 0.5, threads: int | None = None,
                    probe: dict[str, int] = PROBE) -> dict[str, float]:
    """GFLOP/s of the probe on ONNX Runtime: fp32 and static int8 (the models' quantization)."""
    import torch

    from PETriageLib.models.onnx_engine import OnnxSession, engine_problem, export_onnx

    if engine_problem():
        return {}
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from PETriageLib.models.onnx_engine import _calibration_reader

    torch.manual_seed(0)
    b, c, s = probe["batch"], probe["channels"], probe["size"]
    conv = torch.nn.Sequential(torch.nn.Conv2d(c, c, 3, padding=1), torch.nn.ReLU()).eval()
    conv.in_channels = c
    x = np.random.default_rng(0).standard_normal((b, c, s, s)).astype(np.float32)
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(conv, Path(tmp) / "probe.onnx", c, s)
        int8 = Path(tmp) / "probe-int8.onnx"
        quantize_static(str(fp32), str(int8), _calibration_reader(x[:2]), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        for name, path in (("onnxruntime-fp32", fp32), ("onnxruntime-int8", int8)):
            session = OnnxSession(path, threads)
            rates[name] = _best_rate(lambda: session(x), probe_flops(b, c, s), repeats, min_time_s)
    return rates


def measure_limit(repeats: int = 3, min_time_s: float = 0.5, probe: dict[str, int] = PROBE) -> MachineLimit:
    """The probe on every engine and precision this machine has; the best per precision."""
    import torch

    from PETriageLib.models.fast import bf16_supported

    engines = {"torch-fp32": torch_conv_rate("fp32", repeats, min_time_s, probe)}
    if bf16_supported("cpu"):
        engines["torch-bf16"] = torch_conv_rate("bf16", repeats, min_time_s, probe)
    try:
        engines.update(onnx_conv_rates(repeats, min_time_s, torch.get_num_threads(), probe))
    except Exception as exc:  # an engine problem must not lose the torch numbers
        log.warning("ONNX Runtime probe failed: %s", exc)

    def best(suffix: str) -> float | None:
        found = [v for k, v in engines.items() if k.endswith(suffix)]
        return max(found) if found else None

    limit = MachineLimit(fp32=best("fp32") or 0.0, bf16=best("bf16"), int8=best("int8"), engines=engines,
                         probe=dict(probe), threads=torch.get_num_threads())
    log.info("machine limit (GFLOP/s): %s", {k: round(v, 1) for k, v in engines.items()})
    return limit
