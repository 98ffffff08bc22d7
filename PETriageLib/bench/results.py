"""Benchmark results as JSON and as Markdown tables, with the machine they were measured on."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from PETriageLib.bench.timing import load_average


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """CPU model, cores, memory, torch version and threads; the GPU when ``device`` is CUDA."""
    import torch

    from PETriageLib.models.fast import bf16_supported, usable_cpus

    info = {"cpu": _cpu_model(), "logical_cpus": os.cpu_count(), "usable_cpus": usable_cpus(),
            "memory_gb": _memory_gb(), "python": platform.python_version(), "platform": platform.platform(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cpu_bf16": bf16_supported("cpu"), "device": device, "load_avg_start": load_average()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> "float | None":
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def write_results(results: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """bench.json and bench.md in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "markdown": out / "bench.md"}
    paths["json"].write_text(json.dumps(results, indent=1, default=str))
    paths["markdown"].write_text(markdown(results))
    return paths


def _f(x: Any, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + \
        ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def markdown(results: dict[str, Any]) -> str:
    """Every section the run produced, as Markdown."""
    m = results["machine"]
    lines = [f"# PETriage benchmark ({'quick' if results.get('quick') else 'full'} mode)", "",
             f"Machine: {m['cpu']}, {m['usable_cpus']} usable CPUs, {m.get('memory_gb')} GB RAM, "
             f"torch {m['torch']} with {m['torch_threads']} threads, device {m['device']}"
             + (f" ({m['gpu']})" if m.get("gpu") else "") + f"; CPU bf16: {m['cpu_bf16']}. "
             f"Load average {m['load_avg_start']} at start, {results.get('load_avg_end')} at end.", "",
             f"Models: {results['models']['source']} {results['models']['architecture']} "
             f"{results['models']['config']} at {results['models']['input_size']} px.", ""]
    for key, fn in (("end_to_end", _e2e_md), ("throughput", _throughput_md), ("engines", _engines_md),
                    ("compile", _compile_md),
                    ("comparators", _comparators_md), ("memory", _memory_md), ("scaling", _scaling_md)):
        if results.get(key):
            lines += fn(results[key]) + [""]
    return "\n".join(lines)


def _e2e_md(runs: list[dict]) -> list[str]:
    steps = list(runs[0]["steps"])
    head = ["path", "slices", "stage-2 slices"] + steps
    rows = [[r["inference"], f"{r['slices']} x {r['matrix']}", r["stage2_slices"]]
            + [f"{r['steps'][s]['median_s']:.2f}" for s in steps] for r in runs]
    out = [f"## End-to-end triage (median s per step over {runs[0]['repeats']} runs, Grad-CAM on the top "
           f"{runs[0]['top_k']} slices)", ""] + _table(head, rows)
    for r in runs:  # background work hidden behind the steps (absent in results of older versions)
        if r.get("overlapped_s"):
            done = ", ".join(f"{k.replace('_', ' ')} {v:.2f} s" for k, v in r["overlapped_s"].items())
            out += ["", f"{r['inference']}: in a background thread, overlapped with the steps: {done}"]
    return out


def _throughput_md(t: dict) -> list[str]:
    v = t["validation"]
    rows = [[p, r["batch"], _f(r["slices_per_s"]), _f(r["slices_per_cpu_s"]),
             _f(t["speedup"][str(r["batch"])], 2) + "x" if p == "fast" else ""]
            for p in ("naive", "fast") for r in t[p]]
    return [f"## Stage-1 throughput: {t['model']} {t['config']} at {t['input_size']} px", "",
            f"Fast path `{t['fast_mode']}`: max |p_fast - p_fp32| = {v['max_abs_dp']:.5f} "
            f"(tolerance {v['tolerance']}), label agreement {v['label_agreement']:.3f} on {v['n']} fixed slices.", ""] + \
        _table(["path", "batch", "slices/s", "slices/CPU-s", "speed-up"], rows)


def _engines_md(e: dict) -> list[str]:
    lim = e["limit"]
    engines = ", ".join(f"{k} {v:.0f}" for k, v in lim["engines"].items())
    rows = [[r["path"], f"`{r['mode']}`", r["precision"], _f(r["slices_per_s"]), _f(r["gflops"]),
             _f(None if r["fraction_of_limit"] is None else 100 * r["fraction_of_limit"], 0) + "%",
             _f(r["max_abs_dp"], 5), _f(r["label_agreement"], 3), "yes" if r["kept"] else "no (fell back)"]
            for r in e["rows"]]
    return [f"## Stage 1 on every inference path: {e['model']} {e['config']} at {e['input_size']} px, batch "
            f"{e['rows'][0]['batch']}", "",
            f"{e['gflop_per_slice']:.2f} GFLOP per slice (torch.utils.flop_counter). Machine limit this run "
            f"(3x3 convolution {lim['probe']['channels']} -> {lim['probe']['channels']} channels, "
            f"{lim['probe']['size']} px, batch {lim['probe']['batch']}, {lim['threads']} threads), GFLOP/s: "
            f"{engines}. Probabilities against eager fp32 on {e['fixed_slices']} fixed slices; int8 calibrated "
            f"on {e['calibration_slices']} slices of other phantom patients (the training generator's seeds).", ""] + \
        _table(["path", "mode", "precision", "slices/s", "GFLOP/s", "of limit", "max abs dp", "labels agree",
                "engine kept"], rows)


def _compile_md(c: dict) -> list[str]:
    return ["## torch.compile for one series", "",
            f"Compile {c['compile_s']:.1f} s; fast eager {c['eager_fast_slices_per_s']:.1f} slices/s, compiled "
            f"{c['compiled_slices_per_s']:.1f} slices/s at batch {c['batch']}: saves {c['saved_per_series_s']:.1f} s "
            f"on a {c['series_slices']}-slice series, so it {'pays' if c['pays_off'] else 'does not pay'} "
            f"(break-even {_f(c['break_even_slices'], 0)} slices, per model and process)."]


def _comparators_md(c: dict) -> list[str]:
    rows = [[r["model"], f"{r['params'] / 1e6:.2f} M", _f(r["naive_slices_per_s"]), _f(r["fast_slices_per_s"]),
             _f(r["fast_max_abs_dp"], 5)] + _accuracy_cells(r["accuracy"]) for r in c["rows"]]
    out = [f"## Comparators at {c['input_size']} px, batch {c['batch']}", ""] + \
        _table(["model", "params", "naive slices/s", "fast slices/s", "fast max abs dp", "accuracy", "AUROC",
                "trained variant"], rows)
    if c.get("ratio"):
        r = c["ratio"]
        out += ["", f"{r['reference']} : EfficientNet-B5 = {r['speed']:.2f} in speed (fast path), "
                f"{r['naive_speed']:.2f} naive, {r['params']:.3f} in parameters. Accuracy from "
                f"{c.get('accuracy_source') or 'no results file yet'}."]
    return out


def _accuracy_cells(acc: "dict | None") -> list[str]:
    if not acc:
        return ["n/a", "n/a", ""]
    stage = f" (stage {acc['stage']})" if acc.get("stage") else ""
    return [f"{100 * acc['accuracy']:.1f}%", _f(acc.get("auroc"), 3), f"{acc['variant']}{stage}"]


def _memory_md(rows: list[dict]) -> list[str]:
    body = [[f"{r['slices']} x {r['matrix']}", f"{r['peak_rss_mb']:.0f}", f"{r['baseline_rss_mb']:.0f}",
             f"{r['volume_mb']:.0f}", f"{r['beyond_volume_mb']:.0f}", _f(r.get("file_backed_mb"), 0),
             r.get("allocator", "n/a"), f"{r['total_s']:.1f}"] for r in rows]
    return ["## Peak memory of one triage (fresh process each)", ""] + \
        _table(["series", "peak RSS MB", "after model load MB", "HU volume MB", "beyond volume MB",
                "library file pages MB", "malloc", "triage s"], body)


def _scaling_md(s: dict) -> list[str]:
    return ["## Time vs slices", "",
            f"Triage time = {s['slope_s_per_slice'] * 1000:.1f} ms/slice x slices + {s['intercept_s']:.1f} s "
            f"(R^2 {s['r2']:.3f}; {_f(s['slices_per_s'])} slices/s at the margin), from "
            + ", ".join(f"{int(a)} slices: {b:.1f} s" for a, b in s["points"]) + "."]
