"""`petriage screen SOURCE --out DIR`: screen a whole archive, restartably.

SOURCE: a folder tree of studies, a CSV manifest with a 'path' column of folders, or a DICOMweb
root URL (QIDO-RS lists the series, WADO-RS fetches each). Every series ends in OUT/results.sqlite
as done, skipped (the eligibility gate's reason) or failed (the error), with its report under
OUT/reports/; OUT/worklist.csv ranks them all. A rerun with the same models skips what is done and
retries what failed. Runs on Ray (a local cluster by default, --address to join one); with
--no-ray, or without Ray installed, in this process. Exit 0 when no series failed, 1 otherwise, 2
when SOURCE holds no series.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from PETriageLib.cli.triage import add_cascade_options, routing_options, scan_with_bar, screen_options

log = logging.getLogger("petriage.screen")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("screen", help="screen an archive (folder, manifest, DICOMweb) on Ray, restartably",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="a folder tree, a .csv manifest (column 'path') or a DICOMweb URL")
    p.add_argument("--out", type=Path, required=True, help="output store: results.sqlite, reports/, worklist.csv")
    p.add_argument("--address", help="join this Ray cluster (e.g. auto, or HOST:6379); default: start a local one")
    p.add_argument("--workers", type=int, default=None,
                   help="Ray actors (default: the cluster's CPUs / --threads, or its GPUs with --gpus)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPUs (torch threads) per worker (default 1 per Ray worker; in-process, torch's default)")
    p.add_argument("--gpus", type=float, default=0.0, help="GPUs per worker (e.g. 1, or 0.5 to share; default 0)")
    p.add_argument("--max-attempts", type=int, default=3, help="tries of a series whose worker died (default 3)")
    p.add_argument("--no-ray", action="store_true", help="screen in this process (also the path without Ray)")
    add_cascade_options(p)
    p.set_defaults(func=run)


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def cascade_spec(args: argparse.Namespace) -> Any:
    from PETriageLib.cluster.screener import CascadeSpec
    from PETriageLib.triage.stages import default_models

    stage1, stage2 = args.models or default_models()
    device = "cuda" if args.gpus and args.device == "auto" else ("cpu" if args.device == "auto" else args.device)
    return CascadeSpec(str(stage1), str(stage2), device=device, patient_model=args.patient_model,
                       refiner=args.refiner, threshold_disease=args.threshold_disease, threshold_pe=args.threshold,
                       options={"batch_size": args.batch_size, "all_slices": args.all_slices, "min_run": args.min_run,
                                "operating_point": args.operating_point,
                                "inference": args.inference, "domain_check": args.domain_check,
                                "engine": args.engine, **routing_options(args)})


class SeriesBar:
    """Series done out of those left to do, series per minute and the time left (tqdm); shown once
    the workers are up, so that their start-up does not count in the rate."""

    def __init__(self, disable: bool) -> None:
        self.disable, self.bar, self.t0 = disable, None, time.perf_counter()

    def start(self, summary: Any) -> None:
        from tqdm import tqdm

        earlier = f" ({summary.already_finished} finished earlier)" if summary.already_finished else ""
        self.bar = tqdm(total=summary.total - summary.already_finished, desc=f"series{earlier}", unit="series",
                        disable=self.disable)
        self.t0 = time.perf_counter()

    def __call__(self, outcome: Any) -> None:
        self.bar.update(1)
        per_min = 60.0 * self.bar.n / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{per_min:.1f}/min, last {outcome.status}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def worker_count(args: argparse.Namespace, ray: Any) -> int:
    if args.workers:
        return args.workers
    resources = ray.cluster_resources()
    if args.gpus:
        return max(1, int(resources.get("GPU", 0) / args.gpus))
    return max(1, int(resources.get("CPU", 1) // (args.threads or 1)))


def run(args: argparse.Namespace) -> int:
    from PETriageLib.cluster.run import pending_tasks, screen_in_process, write_worklist
    from PETriageLib.cluster.sources import open_source
    from PETriageLib.cluster.store import ResultStore

    quiet = logging.getLogger().level > logging.INFO
    tasks = scan_with_bar(lambda bar: open_source(args.source, progress=bar), args.source)
    if tasks is None:
        return 2
    spec, options, store = cascade_spec(args), screen_options(args), ResultStore(args.out)
    in_process = args.no_ray or not ray_available()
    if not args.no_ray and in_process:
        log.warning("Ray is not installed (pip install 'petriage[cluster]'): screening in this process")
    bar = SeriesBar(quiet)
    try:
        if in_process:
            if args.threads:
                import torch

                torch.set_num_threads(args.threads)
            key, summary = screen_in_process(tasks, spec, options, store, on_outcome=bar, on_start=bar.start)
        else:
            key, summary = _on_ray(args, tasks, spec, options, store, bar)
    finally:
        bar.close()
    worklist = write_worklist(store, key, tasks)
    for line in summary.lines():
        print(line)
    left = pending_tasks(tasks, store, key)
    print(f"worklist: {worklist} ({len(tasks)} series, {len(left)} failed; rerun the same command to retry them)"
          if left else f"worklist: {worklist} ({len(tasks)} series)")
    store.close()
    return 1 if left else 0


def _on_ray(args: argparse.Namespace, tasks: list, spec: Any, options: Any, store: Any, bar: SeriesBar) -> tuple:
    import ray

    from PETriageLib.cluster.actors import RayWorkerPool
    from PETriageLib.cluster.run import screen_on_ray

    joined = ray.is_initialized()  # a caller (a notebook, a test) already joined a cluster: use it
    if not joined:
        ray.init(address=args.address, include_dashboard=False, configure_logging=False,
                 log_to_driver=args.verbose > 0)
    try:
        pool = RayWorkerPool(worker_count(args, ray), spec, options, store.reports,
                             threads=args.threads or 1, gpus=args.gpus)
        try:
            return screen_on_ray(tasks, pool, store, args.max_attempts, on_outcome=bar, on_start=bar.start)
        finally:
            pool.shutdown()
    finally:
        if not joined:
            ray.shutdown()
