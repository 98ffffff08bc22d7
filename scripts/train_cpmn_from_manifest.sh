#!/usr/bin/env bash
# CPMN and ResUnet trained through the manifest path (train-seg --manifest; issue 24), on 40 real-anatomy
# phantom patients written as a dataset (both phases per patient, the manifest's contrast column pairs
# them): what a hospital with paired CTPA / non-contrast series and PE masks would run.
# docs/segmentation.md "CPMN from a manifest, measured". Each step is skipped when its output exists.
# Trained on phantoms: NOT for clinical use.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${W:-work-cache/cpmn-manifest}
PY=${PY:-.venv/bin/python}
PETRIAGE=${PETRIAGE:-.venv/bin/petriage}
CASES="${PETRIAGE_SHARED_DATA:-../shared/data}/real/cadpe-vessels"
export OMP_NUM_THREADS=1
mkdir -p "$W"
cases() { $PY -c "import json,sys; print(' '.join('--case ' + c for c in json.load(open('scripts/real_anatomy_split.json'))['train_cases'][int(sys.argv[1]):int(sys.argv[2])]))" "$1" "$2"; }
[ -f "$W/data/manifest.csv" ] || $PETRIAGE phantom --anatomy real --cases-dir "$CASES" $(cases 0 20) --out "$W/data" \
    --patients 20 --seed 2400 --slice-thickness 2.5 --pixel 1.2 > "$W/gen.log" 2>&1
[ -f "$W/data2/manifest.csv" ] || $PETRIAGE phantom --anatomy real --cases-dir "$CASES" $(cases 20 40) --out "$W/data2" \
    --patients 20 --seed 2401 --slice-thickness 2.5 --pixel 1.2 > "$W/gen2.log" 2>&1
# one manifest over both folders (their paths made relative to $W)
$PY - "$W" <<'PYEOF'
import csv, sys
from pathlib import Path
w = Path(sys.argv[1])
rows = []
for d in ("data", "data2"):
    for r in csv.DictReader(open(w / d / "manifest.csv")):
        rows.append({**r, **{k: f"{d}/{r[k]}" for k in ("series_dir", "labels_csv", "mask")}})
with open(w / "manifest.csv", "w", newline="") as fh:
    out = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
    out.writeheader()
    out.writerows(rows)
PYEOF
nice $PETRIAGE train-seg --manifest "$W/manifest.csv" --model cpmn --model resunet --ablation full --ifd-margin 4 \
    --steps 600 --width 0.125 --lr 3e-3 --pixel-mm 1.2 --patch 64 --out "$W/run" > "$W/train.log" 2>&1
cat "$W/run/tables.md"
