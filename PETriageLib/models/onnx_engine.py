"""ONNX Runtime as the CPU inference engine: export a slice classifier once per checkpoint,
cache the file by the checkpoint's SHA256, optionally quantize it to int8 (static, calibrated on
given slices), and run it.

Optional: ``pip install petriage[fast]`` brings onnxruntime, onnx and onnxscript. Without them
``engine_problem()`` says why and the callers stay on torch.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

log = logging.getLogger(__name__)

OPSET = 17
ENGINE_VERSION = 2  # bump when the export changes: cached files of older versions are not reused
INT8_OPS = ("Conv",)  # only the convolutions: the attention gates and pooling stay fp32
# ... and of those only the 3x3 ones with at least 8 input channels: the rest (first 7x7 conv on
# 1-3 channels, the 7x7 spatial gates on 2, the gates' 1x1 MLPs) carry few FLOPs and, measured on
# the shipped stage 1, most of the int8 error (max |dp| 0.066 quantizing all, 0.038 without them).
INT8_MIN_CHANNELS = 8


def _convs_kept_fp32(path: Path) -> list[str]:
    """Names of the Conv nodes that int8 would gain little on (see INT8_MIN_CHANNELS)."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {i.name: list(i.dims) for i in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type == "Conv":
            dims = weights.get(node.input[1], [])
            if len(dims) != 4 or dims[2:] != [3, 3] or dims[1] < INT8_MIN_CHANNELS:
                keep.append(node.name)
    return keep


def engine_problem() -> str | None:
    """None when ONNX Runtime and the exporter's dependencies are importable, else why not."""
    for name in ("onnxruntime", "onnx"):
        try:
            __import__(name)
        except ImportError as exc:
            return f"{name} is not installed ({exc}); pip install 'petriage[fast]'"
    return None


def default_cache_dir() -> Path:
    """Where exported graphs are kept: $PETRIAGE_ENGINE_CACHE, else ~/.cache/petriage/engines."""
    env = os.environ.get("PETRIAGE_ENGINE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "petriage" / "engines"


@dataclass(frozen=True)
class EngineFile:
    """One exported graph: the checkpoint it came from and the variant ("fp32", "int8")."""

    path: Path
    sha256: str
    variant: str
    exported: bool  # False: reused from the cache


def cached_path(cache_dir: str | Path, sha256: str, variant: str, input_size: int) -> Path:
    return Path(cache_dir) / f"{sha256[:32]}-{input_size}px-v{ENGINE_VERSION}-{variant}.onnx"


def export_onnx(model: Any, path: str | Path, in_channels: int, input_size: int) -> Path:
    """Write ``model`` (eval, fp32) as ONNX with a dynamic batch; atomically (temp file, rename)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    example = torch.zeros(2, in_channels, input_size, input_size)
    model = model.eval().float()
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about the input checks: shapes are fixed here
        torch.onnx.export(model, (example,), str(tmp), dynamo=False, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, opset_version=OPSET)
    os.replace(tmp, path)
    return path


def exported(model: Any, sha256: str, input_size: int, cache_dir: str | Path | None = None) -> EngineFile:
    """The fp32 ONNX file of this checkpoint, exported on first use and reused after."""
    path = cached_path(cache_dir or default_cache_dir(), sha256, "fp32", input_size)
    if path.is_file():
        return EngineFile(path, sha256, "fp32", exported=False)
    log.info("exporting %s to ONNX (once per checkpoint): %s", getattr(model, "name", "model"), path)
    export_onnx(model, path, int(model.in_channels), input_size)
    return EngineFile(path, sha256, "fp32", exported=True)


def _calibration_reader(images: np.ndarray, batch: int = 8) -> Any:
    """The quantizer's data reader (its base class must be ONNX Runtime's) over ``images``."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[dict[str, np.ndarray]] = iter(
                {"x": np.ascontiguousarray(images[i:i + batch], dtype=np.float32)}
                for i in range(0, len(images), batch))

        def get_next(self) -> "dict[str, np.ndarray] | None":
            return next(self.batches, None)

    return Reader()


def quantized(fp32: EngineFile, calibration: np.ndarray, cache_dir: str | Path | None = None) -> EngineFile:
    """Static int8 (QDQ, per-channel weights, uint8 activations) of ``fp32``, calibrated on
    ``calibration`` (N, C, H, W) slices; cached next to the fp32 file. The calibration set is
    part of the key only through its count: pass the same slices for a given checkpoint."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise ValueError("int8 quantization needs calibration slices")
    variant = f"int8c{len(calibration)}"
    path = cached_path(cache_dir or fp32.path.parent, fp32.sha256, variant, _input_size(fp32.path))
    if path.is_file():
        return EngineFile(path, fp32.sha256, variant, exported=False)
    pre = path.with_suffix(f".pre{os.getpid()}.onnx")
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        quant_pre_process(str(fp32.path), str(pre))
        quantize_static(str(pre), str(tmp), _calibration_reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=list(INT8_OPS), nodes_to_exclude=_convs_kept_fp32(pre))
        os.replace(tmp, path)
    finally:
        for leftover in (pre, tmp):
            leftover.unlink(missing_ok=True)
    log.info("quantized %s to int8 on %d calibration slices: %s", fp32.path.name, len(calibration), path)
    return EngineFile(path, fp32.sha256, variant, exported=True)


def _input_size(path: Path) -> int:
    return int(path.name.split("-")[1].removesuffix("px"))


class OnnxSession:
    """An ONNX Runtime CPU session: fp32 (N, C, H, W) numpy in, (N, 1) logits out."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images: Any) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(images, dtype=np.float32))
        return self.session.run(None, {self.input_name: x})[0]
