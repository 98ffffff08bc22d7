#!/usr/bin/env bash
# Reproduce the shipped demo models Resources/models/cbamdrn_d22_demo_stage{1,2}.pt and their test report.
# Everything runs on the CPU (about 1 hour on 2 shared cores). Trained on synthetic phantoms only:
# the resulting models are NOT for clinical use.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${W:-work-cache/demo}
PY=${PY:-.venv/bin/python}
PETRIAGE=${PETRIAGE:-.venv/bin/petriage}
mkdir -p "$W"

# 1. Synthetic training set: 2 x 60 patients (seeds 1000 and 1001, generated in parallel), 256 px, 40-60 slices.
for part in a:1000 b:1001; do
    [ -f "$W/train-data-${part%:*}/manifest.csv" ] || $PETRIAGE phantom --out "$W/train-data-${part%:*}" \
        --patients 60 --seed "${part#*:}" --matrix 256 --slices 40-60 > "$W/gen-train-${part%:*}.log" 2>&1 &
done
wait

# 2. Both stages in parallel, one thread each, on a patient-wise 5:1 train/val split, one-cycle schedule
#    from scratch; the epoch with the best validation AUROC is kept. Re-running resumes an interrupted run.
COMMON=(--manifest "$W/train-data-a/manifest.csv" "$W/train-data-b/manifest.csv" --ratios 5,1,0
        --splits "$W/splits.json" --cache "$W/cache" --amp bf16 --threads 1 --seed 0 --batch-size 16 --no-progress)
MODEL=(--model cbamdrn_d22 --width 0.25 --windows vascular,lung --input-size 128 --crop dynamic)
$PETRIAGE train --stage 1 --out "$W/stage1" "${COMMON[@]}" "${MODEL[@]}" --lr 2e-3 \
    --epochs 6 --steps-per-epoch 100 --patience 6 > "$W/stage1.log" 2>&1 &
$PETRIAGE train --stage 2 --out "$W/stage2" "${COMMON[@]}" "${MODEL[@]}" --lr 2e-3 \
    --epochs 12 --steps-per-epoch 50 --patience 12 > "$W/stage2.log" 2>&1 &
wait

# 3. Held-out test set (seed 5000, never used in training) at the real-CT matrix (512), half with PE of every size.
[ -f "$W/test-data/manifest.csv" ] || \
    $PETRIAGE phantom --out "$W/test-data" --patients 40 --seed 5000 --matrix 512 --slices 50-70 --pe-fraction 0.5
$PETRIAGE evaluate --manifest "$W/test-data/manifest.csv" --split all --stage1 "$W/stage1/best.pt" \
    --stage2 "$W/stage2/best.pt" --cache "$W/test-cache" --out "$W/test-report" --bootstrap 300

# 4. Ship: copy into Resources/models and register with SHA256 and model card.
$PY -m PETriageLib.training.ship "$W" stage1 stage2
