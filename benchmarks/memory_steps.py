"""Sample RSS every 20 ms during one triage of a phantom series; print the peak per step (which step
makes the peak). `BATCH=16 PYTHONPATH=. .venv/bin/python benchmarks/memory_steps.py 600 [CACHE_DIR]`"""
import os, sys, threading, time, tempfile, json
os.environ.setdefault("OMP_NUM_THREADS", "1")
from PETriageLib.bench.phantom_series import bench_series
from PETriageLib.bench.memory import peak_rss_mb
slices = int(sys.argv[1]) if len(sys.argv) > 1 else 600
series = bench_series(slices, 512, sys.argv[2] if len(sys.argv) > 2 else "/tmp/petriage-bench-cache")
from PETriageLib.bench.endtoend import bench_cascade, triage_once
cascade = bench_cascade("cbamdrn_d22_demo_stage1", "cbamdrn_d22_demo_stage2", "cpu", "fast", batch_size=int(os.environ.get("BATCH", "32")))
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
state = {"step": "start", "peaks": {}}
def sampler():
    while not state.get("stop"):
        r = rss(); s = state["step"]
        state["peaks"][s] = max(state["peaks"].get(s, 0), r)
        time.sleep(0.02)
import PETriageLib.triage.cascade as C
import PETriageLib.screening.one_series as S
def wrap(mod, name, label):
    f = getattr(mod, name)
    def g(*a, **k):
        state["step"] = label
        try: return f(*a, **k)
        finally: state["step"] = label + "-done"
    setattr(mod, name, g)
wrap(S, "load_series", "reading")
wrap(C, "analyse_lungs", "lungs")
wrap(S, "compute_heatmaps", "gradcam")
wrap(S, "write_report", "writing")
orig_run = C.Cascade.run
def run(self, *a, **k):
    state["step"] = "cascade"
    try: return orig_run(self, *a, **k)
    finally: state["step"] = "cascade-done"
C.Cascade.run = run
t = threading.Thread(target=sampler, daemon=True); t.start()
base = rss()
with tempfile.TemporaryDirectory() as out:
    r = triage_once(cascade, series, out, 5)
state["stop"] = True; t.join()
print(json.dumps({"baseline": round(base), "hwm": round(peak_rss_mb()), "peaks": {k: round(v) for k, v in state["peaks"].items()}}, indent=1))
