"""Every benchmark in one run on the same generated series: ``run_bench(...)`` -> results dict."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from PETriageLib.bench.comparators import COMPARATORS
from PETriageLib.bench.timing import load_average

log = logging.getLogger(__name__)

# memory includes the scaling fit; engines: every inference path against the machine's limit
SECTIONS = ("throughput", "engines", "end_to_end", "comparators", "memory")


@dataclass
class BenchPlan:
    """What to measure and how hard: the full plan of issue 8, or a quick one for CI."""

    matrix: int = 512
    e2e_slices: int = 300
    memory_slices: Sequence[int] = (100, 300, 600)
    batch_sizes: Sequence[int] = (1, 8, 32)
    fixed_slices: int = 64
    repeats: int = 3
    warmup: int = 1
    min_time_s: float = 2.0
    comparator_batch: int = 8
    engine_batch: int = 32
    calibration_slices: int = 32  # int8 calibration: slices of each calibration patient
    # int8 calibration patients: the training manifests' generator seeds (scripts/train_demo_models.sh),
    # never the checked patient; 4 x 32 slices measured max |dp| 0.052 against 0.15 from one patient
    calibration_seeds: Sequence[int] = (1200, 1201, 1300, 1301)
    comparators: Sequence[tuple[str, dict]] = COMPARATORS
    top_k: int = 5  # Grad-CAM slices per triage
    naive_e2e: bool = True
    compile: bool = True
    sections: Sequence[str] = SECTIONS

    @classmethod
    def quick(cls) -> "BenchPlan":
        return cls(matrix=128, e2e_slices=16, memory_slices=(12, 16), batch_sizes=(1, 2), fixed_slices=2,
                   repeats=1, warmup=0, min_time_s=0.0, comparator_batch=1, naive_e2e=False, compile=False,
                   engine_batch=2, calibration_slices=4, calibration_seeds=(9,),
                   comparators=(("efficientnet_b5", {}),), top_k=1)


def run_bench(out_dir: str | Path, quick: bool = False, device: str = "cpu", plan: BenchPlan | None = None,
              cache_dir: str | Path | None = None, accuracy_file: str | Path | None = None,
              prefer_shipped: bool = True, models: "tuple[str, str] | None" = None) -> dict[str, Any]:
    """Run the plan; returns the results (JSON-able). Series are cached in ``cache_dir``."""
    from PETriageLib.bench.results import machine_info
    from PETriageLib.bench.phantom_series import bench_series
    from PETriageLib.bench.bench_models import bench_models

    plan = plan or (BenchPlan.quick() if quick else BenchPlan())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir else out / "series-cache"
    t0 = time.perf_counter()
    results: dict[str, Any] = {"quick": quick, "machine": machine_info(device), "plan": dict(plan.__dict__)}
    bench = bench_models(out, prefer_shipped, models)
    results["models"] = bench.to_dict()
    lengths = sorted(set(plan.memory_slices) | {plan.e2e_slices})
    series = {n: bench_series(n, plan.matrix, cache) for n in lengths}
    if {"throughput", "comparators", "engines"} & set(plan.sections):
        images = _fixed_images(bench, series[plan.e2e_slices], plan.fixed_slices)
    if "throughput" in plan.sections:
        results["throughput"] = _throughput(bench, images, device, plan)
        if plan.compile:
            results["compile"] = _compile(bench, images, device, plan)
    if "engines" in plan.sections:
        results["engines"] = _engines(bench, images, plan, cache, out)
    if "end_to_end" in plan.sections:
        results["end_to_end"] = _end_to_end(bench, series[plan.e2e_slices], device, plan)
    if "comparators" in plan.sections:
        from PETriageLib.bench.comparators import compare_models

        log.info("comparators")
        reference = (bench.architecture, {k: v for k, v in bench.config.items() if k != "dropout"})
        results["comparators"] = compare_models(images, reference, device, plan.comparator_batch,
                                                max(1, plan.repeats), plan.min_time_s / 2, plan.comparators,
                                                accuracy_file)
    if "memory" in plan.sections:
        _memory_and_scaling(results, bench, [series[n] for n in plan.memory_slices], device, plan.top_k)
    results["load_avg_end"] = load_average()
    results["wall_s"] = time.perf_counter() - t0
    return results


def _fixed_images(models: Any, series_dir: Path, count: int) -> Any:
    from PETriageLib.bench.throughput import fixed_slices
    from PETriageLib.models.checkpoint import load_checkpoint
    from PETriageLib.models.zoo import resolve_model
    from PETriageLib.preprocess.slices import PreprocessConfig

    _, meta = load_checkpoint(*resolve_model(models.stage1))
    return fixed_slices(series_dir, PreprocessConfig.from_dict(meta), count)


def _stage1_model(models: Any) -> Any:
    from PETriageLib.models.checkpoint import load_checkpoint
    from PETriageLib.models.zoo import resolve_model

    return load_checkpoint(*resolve_model(models.stage1))[0]


def _throughput(models: Any, images: Any, device: str, plan: BenchPlan) -> dict[str, Any]:
    from PETriageLib.bench.throughput import stage1_throughput

    log.info("stage-1 throughput at batch %s", list(plan.batch_sizes))
    return stage1_throughput(_stage1_model(models), images, device, plan.batch_sizes, max(1, plan.repeats),
                             plan.min_time_s)


def _engines(models: Any, images: Any, plan: BenchPlan, cache: Path, out: Path) -> dict[str, Any]:
    """Every inference path of stage 1 on the CPU, against the limit measured in this run."""
    import numpy as np

    from PETriageLib.bench.engine_paths import engine_paths
    from PETriageLib.bench.machine_limit import measure_limit
    from PETriageLib.bench.phantom_series import SEED, bench_series
    from PETriageLib.models.checkpoint import file_sha256
    from PETriageLib.models.zoo import resolve_model

    log.info("machine limit (3x3 convolution probe) and stage 1 on every inference path")
    limit = measure_limit(repeats=max(1, plan.repeats), min_time_s=plan.min_time_s / 4)
    calibration = np.concatenate([
        _fixed_images(models, bench_series(max(plan.calibration_slices, 50), plan.matrix, cache, seed=seed),
                      plan.calibration_slices)
        for seed in plan.calibration_seeds if seed != SEED])
    path, _ = resolve_model(models.stage1)
    return engine_paths(_stage1_model(models), file_sha256(path), images, calibration, limit, out / "engines",
                        plan.engine_batch, max(1, plan.repeats), plan.min_time_s)


def _compile(models: Any, images: Any, device: str, plan: BenchPlan) -> "dict[str, Any] | None":
    from PETriageLib.bench.throughput import compile_payoff

    log.info("torch.compile payoff (compiles once; slow)")
    try:
        return compile_payoff(_stage1_model(models), images, device, series_slices=plan.e2e_slices)
    except Exception as exc:  # a compiler toolchain problem must not lose the other numbers
        log.warning("torch.compile benchmark failed: %s", exc)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _end_to_end(models: Any, series_dir: Path, device: str, plan: BenchPlan) -> list[dict[str, Any]]:
    from PETriageLib.bench.endtoend import end_to_end

    runs = []
    for inference in ("fast", "naive") if plan.naive_e2e else ("fast",):
        log.info("end-to-end triage, %s path", inference)
        runs.append(end_to_end(models.stage1, models.stage2, series_dir, device, inference,
                               repeats=max(1, plan.repeats), warmup=plan.warmup, top_k=plan.top_k))
    return runs


def _memory_and_scaling(results: dict, models: Any, series_dirs: Sequence[Path], device: str, top_k: int) -> None:
    from PETriageLib.bench.memory import peak_memory
    from PETriageLib.bench.scaling import fit_slope

    log.info("peak memory of %d series in subprocesses", len(series_dirs))
    rows = peak_memory(series_dirs, models.stage1, models.stage2, device, top_k=top_k)
    results["memory"] = rows
    if len({r["slices"] for r in rows}) >= 2:
        results["scaling"] = fit_slope([r["slices"] for r in rows], [r["total_s"] for r in rows])
