#!/usr/bin/env bash
# Reproduce the shipped demo models Resources/models/petriage_demo_stage{1,2}.pt and their test report.
# Everything runs on the CPU (about 2 hours on 2 shared cores). Trained on synthetic phantoms only:
# the resulting models are NOT for clinical use.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${W:-work-cache/demo}
PY=${PY:-.venv/bin/python}
PETRIAGE=${PETRIAGE:-.venv/bin/petriage}
mkdir -p "$W"

# 1. Synthetic data: training set (seed 1000) and a held-out test set (seed 5000, never used in training).
[ -f "$W/train-data/manifest.csv" ] || $PY -c "from PETriageLib.phantom.dataset import generate_dataset; \
generate_dataset('$W/train-data', patients=120, seed=1000, matrix=256, slices=(40, 60))"

# 2. Both stages in parallel, one thread each; patient-wise 5:1 train/val split; re-running resumes.
COMMON=(--manifest "$W/train-data/manifest.csv" --model cbamdrn_d22 --width 0.25 --windows vascular,lung
        --input-size 128 --crop dynamic --ratios 5,1,0 --splits "$W/splits.json" --cache "$W/cache"
        --amp bf16 --threads 1 --seed 0 --batch-size 16 --lr 2e-3 --no-progress)
$PETRIAGE train --stage 1 --out "$W/stage1" "${COMMON[@]}" --epochs 5 --steps-per-epoch 120 --patience 3 \
    > "$W/stage1.log" 2>&1 &
$PETRIAGE train --stage 2 --out "$W/stage2" "${COMMON[@]}" --epochs 10 --steps-per-epoch 60 --patience 4 \
    > "$W/stage2.log" 2>&1 &
wait

# 3. Held-out test set at the real-CT matrix (512), half of the patients with PE of every size.
[ -f "$W/test-data/manifest.csv" ] || $PY -c "from PETriageLib.phantom.dataset import generate_dataset; \
generate_dataset('$W/test-data', patients=40, seed=5000, matrix=512, slices=(50, 70), pe_fraction=0.5)"
$PETRIAGE evaluate --manifest "$W/test-data/manifest.csv" --split all --stage1 "$W/stage1/best.pt" \
    --stage2 "$W/stage2/best.pt" --cache "$W/test-cache" --out "$W/test-report"

# 4. Ship: copy into Resources/models and register with SHA256 and model card.
$PY -m PETriageLib.training.ship "$W"
