"""The process group of a `torchrun` launch: which rank this is, of how many, and the few
collective steps training needs (barrier, broadcast from rank 0, DDP wrapping, cleanup).

Outside torchrun (no WORLD_SIZE in the environment) everything here is a no-op for one process,
so `petriage train` runs the same code with or without it.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)
# Rank 0 may spend long on one step the others wait for (building its share of the slice cache,
# validating): the default 30 minutes of gloo and 10 of NCCL are too short for a large data set.
TIMEOUT = timedelta(seconds=float(os.environ.get("PETRIAGE_DIST_TIMEOUT_S", 6 * 3600)))


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str = "cpu") -> "tuple[DistContext, str]":
    """Join the process group torchrun set up (env://) and return it with this rank's device.

    gloo on the CPU, NCCL on CUDA (each rank on GPU LOCAL_RANK). Ranks other than 0 log
    warnings only, so a run logs once.
    """
    if not launched_by_torchrun():
        return DistContext(), device
    if dist.is_initialized():
        ctx = DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    else:
        ctx = DistContext(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", timeout=TIMEOUT)
    if device.startswith("cuda"):
        torch.cuda.set_device(ctx.local_rank)
        device = f"cuda:{ctx.local_rank}"
    if not ctx.is_main:
        logging.getLogger("PETriageLib").setLevel(logging.WARNING)
    log.info("rank %d of %d (%s, %s)", ctx.rank, ctx.world_size, dist.get_backend(), device)
    return ctx, device


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


def broadcast(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects: metrics, history, flags)."""
    if not ctx.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap_model(ctx: DistContext, module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around ``module`` (gradients averaged over the ranks), or ``module``."""
    if not ctx.active:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # BatchNorm stays per rank (SyncBatchNorm refuses CPU modules); buffers come from rank 0 each
    # step, so rank 0's running statistics are the ones checkpointed (docs/scale.md).
    return DistributedDataParallel(module, device_ids=ids)


def cleanup(ctx: DistContext) -> None:
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()
