"""Archive screening throughput on this machine: in-process against 1 and 2 Ray workers, the
overhead Ray adds per series, and from those a model (said to be one) of N machines.

Rerun: PYTHONPATH=. .venv/bin/python benchmarks/cluster_screening.py --series 8 --slices 40 --matrix 256
(add --address auto on a cluster; --gpus 1 on a GPU machine: see docs/scale.md)
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PETriageLib.cluster.actors import RayWorkerPool
from PETriageLib.cluster.archive_summary import ArchiveSummary
from PETriageLib.cluster.run import screen_in_process, screen_on_ray
from PETriageLib.cluster.sources import open_source
from PETriageLib.cluster.store import STATUSES, ResultStore
from PETriageLib.cluster.screener import CascadeSpec
from PETriageLib.screening.one_series import ScreenOptions
from PETriageLib.triage.stages import default_models

log = logging.getLogger("cluster_screening")


@dataclass(frozen=True)
class Timed:
    label: str
    series: int
    startup_s: float  # ray.init is not in it; actors starting and loading the models is
    screening_s: float
    outcomes: str  # e.g. "6 done, 0 skipped, 0 failed": a throughput of failures would mean nothing

    @property
    def per_minute(self) -> float:
        return 60.0 * self.series / self.screening_s

    @property
    def s_per_series(self) -> float:
        return self.screening_s / self.series


def write_archive(root: Path, series: int, slices: int, matrix: int) -> Path:
    from PETriageLib.phantom import generate_study, write_study

    for seed in range(series):
        write_study(generate_study(100 + seed, matrix=matrix, slices=slices, pe=seed % 2 == 0), root / f"s{seed}")
    return root


def time_in_process(tasks: list, spec: CascadeSpec, options: ScreenOptions, out: Path) -> Timed:
    _, summary = screen_in_process(tasks, spec, options, ResultStore(out))
    return Timed("in-process", summary.screened, summary.startup_s, summary.seconds, outcomes(summary))


def time_ray(tasks: list, spec: CascadeSpec, options: ScreenOptions, out: Path, workers: int, threads: int,
             gpus: float) -> Timed:
    store = ResultStore(out)
    pool = RayWorkerPool(workers, spec, options, store.reports, threads=threads, gpus=gpus)
    try:
        _, summary = screen_on_ray(tasks, pool, store)
    finally:
        pool.shutdown()
    return Timed(f"Ray, {workers} worker(s) x {threads} thread(s)", summary.screened, summary.startup_s,
                 summary.seconds, outcomes(summary))


def outcomes(summary: ArchiveSummary) -> str:
    return ", ".join(f"{summary.counts[s]} {s}" for s in STATUSES)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", type=int, default=8)
    p.add_argument("--slices", type=int, default=40)
    p.add_argument("--matrix", type=int, default=256)
    p.add_argument("--models", nargs=2, help="stage 1 and 2 (default: the shipped default models)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=1, help="torch threads per Ray worker and in-process")
    p.add_argument("--gpus", type=float, default=0.0, help="GPUs per Ray worker (device cuda)")
    p.add_argument("--address", help="a Ray cluster to join (default: a local one)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import ray
    import torch

    torch.set_num_threads(args.threads)
    stage1, stage2 = args.models or default_models()
    spec = CascadeSpec(str(stage1), str(stage2), device="cuda" if args.gpus else "cpu")
    options = ScreenOptions(key_images=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tasks = open_source(str(write_archive(root / "archive", args.series, args.slices, args.matrix)))
        results = [time_in_process(tasks, spec, options, root / "inproc")]
        t = time.perf_counter()
        ray.init(address=args.address, include_dashboard=False, configure_logging=False, log_to_driver=False)
        init_s = time.perf_counter() - t
        try:
            results += [time_ray(tasks, spec, options, root / f"ray{w}", w, args.threads, args.gpus)
                        for w in args.workers]
        finally:
            ray.shutdown()
    print(f"{args.series} phantom series of {args.slices} x {args.matrix} px, models {Path(stage1).name} + "
          f"{Path(stage2).name}, {torch.get_num_threads()} torch thread(s) per worker; ray.init {init_s:.1f} s")
    for r in results:
        print(f"{r.label:32s} {r.per_minute:6.1f} series/min  {r.s_per_series:5.2f} s/series  "
              f"(startup {r.startup_s:.1f} s; {r.outcomes})")
    base, one = results[0], results[1]
    print(f"Ray overhead per series (1 worker against in-process): {one.s_per_series - base.s_per_series:+.2f} s")
    if len(results) > 2:
        best = results[-1]
        workers = args.workers[-1]
        efficiency = best.per_minute / (workers * one.per_minute)
        print(f"scaling efficiency with {workers} workers here: {efficiency:.0%}")
        print("model (not a measurement): N machines x W workers each ~ N x W x "
              f"{one.per_minute:.1f} series/min x {efficiency:.2f} while the source and the store keep up, e.g. "
              f"10 machines x 8 workers ~ {10 * 8 * one.per_minute * efficiency:.0f} series/min")


if __name__ == "__main__":
    main()
