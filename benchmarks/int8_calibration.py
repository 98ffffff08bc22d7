"""int8 on the shipped stage 1, calibrated on training-like phantom slices: max |dp| and label
agreement against eager fp32 on 64 lung slices of the bench phantom (seed 8), per calibration variant.

`PYTHONPATH=. .venv/bin/python benchmarks/int8_calibration.py [WORK_DIR]` (about 10 minutes on one core;
results in WORK_DIR/int8.json; docs/benchmarks.md "int8 calibrated on training slices").
"""
import json
import sys
import time
import numpy as np, torch
from pathlib import Path
torch.set_num_threads(1)
from PETriageLib.triage.stages import load_stage
from PETriageLib.preprocess.lungs import analyse_lungs
from PETriageLib.preprocess.slices import prepare_slices, PreprocessConfig
from PETriageLib.ingest.load import load_series
from PETriageLib.phantom.study import generate_study
from PETriageLib.models import onnx_engine as oe
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static, CalibrationMethod
from onnxruntime.quantization.shape_inference import quant_pre_process
import onnxruntime as ort
from PETriageLib.bench.phantom_series import bench_series
work = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/petriage-int8")
cache = work / "engines"; cache.mkdir(parents=True, exist_ok=True)
st = load_stage(1, "cbamdrn_d22_demo_stage1")
cfg = PreprocessConfig.from_dict(st.meta)
def lung_images(volume, n, seed=0):
    lungs = analyse_lungs(volume)
    idx = [k for k, s in enumerate(lungs) if s.has_lung]
    pick = sorted(np.random.default_rng(seed).choice(idx, min(n, len(idx)), replace=False).tolist())
    return prepare_slices(volume, pick, cfg, lungs).images
evalv = load_series(bench_series(300, 512, work / "series"))
ev = lung_images(evalv, 64); del evalv
calib = []
for seed in (1200, 1201, 1300, 1301):  # the training manifests' generator seeds, training settings (512, 40-60 slices)
    s = generate_study(seed, matrix=512, slices=50)
    calib.append(lung_images(s.volume, 32, seed))
calib = np.concatenate(calib)
print("eval", ev.shape, "calib", calib.shape, flush=True)
with torch.inference_mode():
    ref = torch.sigmoid(st.model(torch.from_numpy(ev)).float()).reshape(-1).numpy()
fp32 = oe.exported(st.model, st.sha256, int(st.meta["input_size"]), cache)
pre = cache / "pre.onnx"; quant_pre_process(str(fp32.path), str(pre))
excl_base = oe._convs_kept_fp32(pre)
import onnx
convs = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
def reader(images, batch=8):
    from onnxruntime.quantization import CalibrationDataReader
    class R(CalibrationDataReader):
        def __init__(s): s.it = iter({"x": np.ascontiguousarray(images[i:i+batch])} for i in range(0, len(images), batch))
        def get_next(s): return next(s.it, None)
    return R()
def run(path):
    so = ort.SessionOptions(); so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    out = np.concatenate([sess.run(None, {"x": ev[i:i+16]})[0] for i in range(0, len(ev), 16)]).reshape(-1)
    return 1 / (1 + np.exp(-out.astype(np.float64)))
thr = float(st.meta.get("threshold", 0.5))
results = {}
def variant(name, images, method=CalibrationMethod.MinMax, exclude=(), extra=None, act=QuantType.QUInt8):
    t = time.time(); out = cache / f"{name}.onnx"
    quantize_static(str(pre), str(out), reader(images), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=act, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                    nodes_to_exclude=list(excl_base) + list(exclude), calibrate_method=method, extra_options=extra or {})
    p = run(out); dp = np.abs(p - ref)
    results[name] = {"max_dp": round(float(dp.max()), 4), "mean_dp": round(float(dp.mean()), 5),
                     "labels_agree_0.5": float(((p >= 0.5) == (ref >= 0.5)).mean()),
                     "labels_agree_thr": float(((p >= thr) == (ref >= thr)).mean()), "s": round(time.time() - t, 1)}
    print(name, results[name], flush=True)
p32 = run(fp32.path); print("fp32 onnx max dp", float(np.abs(p32 - ref).max()), flush=True)
other = generate_study(9, matrix=512, slices=50); other_im = lung_images(other.volume, 32, 9)
variant("minmax_otherpatient32", other_im)
variant("minmax_train128", calib)
variant("percentile_train128", calib, CalibrationMethod.Percentile, extra={"CalibPercentile": 99.99})
variant("minmax_train128_last4fp32", calib, exclude=convs[-4:])
variant("minmax_train128_symact", calib, act=QuantType.QInt8, extra={"ActivationSymmetric": True})
variant("entropy_train128", calib, CalibrationMethod.Entropy)
json.dump(results, open(work / "int8.json", "w"), indent=1)
