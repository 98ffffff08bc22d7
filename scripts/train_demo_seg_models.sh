#!/usr/bin/env bash
# Embolus segmentation (ResUnet, FUSA-ResUnet) and the non-contrast CPMN model with its ablations on
# paired CTPA / non-contrast real-anatomy phantoms; scores whole held-back CAD-PE cases per clot level.
# Resumable: a run whose checkpoint is already in $OUT is loaded, not retrained.
# Time-boxed for a 2-core CPU: about 5-10 minutes per model at these settings (measure before trusting it).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-work-cache/seg-real}
mkdir -p "$OUT"
nohup .venv/bin/petriage train-seg --anatomy real \
  --model resunet --model fusa_resunet --model cpmn \
  --ablation full --ablation no-ifa --ablation no-ifd --ablation neither --ifd-margin 4 \
  --train-patients 20 --validation-patients 4 --eval-patients 12 \
  --steps 600 --width 0.125 --lr 3e-3 --pixel-mm 1.2 --slice-thickness 2.5 --patch 64 \
  --out "$OUT" > "$OUT/train.log" 2>&1 &
echo "training in the background; log: $OUT/train.log"
