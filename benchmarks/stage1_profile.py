"""Where stage 1's time goes on the fast path: torch.profiler's operators by self CPU time, with
their input shapes, for one batch of the shipped stage 1, and its rate against the bf16 probe.

    PYTHONPATH=. python benchmarks/stage1_profile.py [THREADS] [BATCH]
"""
from __future__ import annotations

import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from PETriageLib.bench.machine_limit import model_flops, torch_conv_rate
from PETriageLib.models.fast import FastOptions, optimize_model
from PETriageLib.triage.stages import load_stage


def main(threads: int = 1, batch: int = 32) -> None:
    torch.set_num_threads(threads)
    stage = load_stage(1, "cbamdrn_d22_demo_stage1")
    model, size = stage.model.eval(), int(stage.meta["input_size"])
    fast, mode = optimize_model(model, "cpu", FastOptions(fp32_gates=False))
    x = torch.randn(batch, model.in_channels, size, size)
    flops = model_flops(model, model.in_channels, size)
    with torch.inference_mode():
        for _ in range(2):
            fast(x)
        t = time.perf_counter()
        for _ in range(3):
            fast(x)
        rate = 3 * batch / (time.perf_counter() - t)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            fast(x)
    probe = torch_conv_rate("bf16" if "bf16" in mode else "fp32")
    print(f"{mode}, {threads} thread(s), batch {batch}: {rate:.1f} slices/s, {rate * flops / 1e9:.0f} GFLOP/s "
          f"({rate * flops / 1e9 / probe:.0%} of the {probe:.0f} GFLOP/s probe)")
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
