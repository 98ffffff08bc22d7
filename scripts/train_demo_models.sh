#!/usr/bin/env bash
# Reproduce the shipped demo models Resources/models/cbamdrn_d22_demo_stage{1,2}.pt and their test report.
# As shipped, everything runs on the CPU (2 cores); the time of each part depends on the machine's
# load: phantoms 4 minutes; four pairs of runs (first pass 75 minutes and its fine-tuning 25 on a
# busy day; the same two with the lesion-map loss 48 and 16 on a quiet one), one more run per stage
# (about 33 minutes each with 2 threads), both trained on at 160 px (about 50 minutes, in parallel),
# then on 360 phantoms at 512 x 512 at 224 px (about 80 minutes), then with 160 small-clot phantoms
# and slice context (about 100), then the test set and its evaluation (about 15).
# Trained on synthetic phantoms only: the resulting models are NOT for clinical use. Every
# `petriage train` stores its checkpoint's domain check (feature statistics of its training
# slices), so that triage refuses series unlike them (real CT, for these models). The stage 1
# shipped on 2026-11-29 was trained before that and got its statistics from `petriage fit-domain`
# (docs/training.md, "Domain check").
# The same recipe scales to a GPU, e.g.:
#   DEVICE=cuda WIDTH=1.0 INPUT_SIZE=256 MATRIX=512 EPOCHS=30 AMP=auto W=work-cache/gpu bash scripts/train_demo_models.sh
set -euo pipefail
cd "$(dirname "$0")/.."
W=${W:-work-cache/demo-models}
PY=${PY:-.venv/bin/python}
PETRIAGE=${PETRIAGE:-.venv/bin/petriage}
DEVICE=${DEVICE:-cpu}
WIDTH=${WIDTH:-0.25}
INPUT_SIZE=${INPUT_SIZE:-128}
EPOCHS=${EPOCHS:-8}
FT_EPOCHS=${FT_EPOCHS:-3}
MATRIX=${MATRIX:-256}
AMP=${AMP:-bf16}
mkdir -p "$W"

# 1. Synthetic training set: 720 patients from four seeds, 256 px matrix (MATRIX), 40-60 slices, two seeds at a time.
gen() {
    [ -f "$W/train-$1/manifest.csv" ] || $PETRIAGE phantom --anatomy formula --out "$W/train-$1" --patients "$2" --seed "$1" \
        --matrix "$MATRIX" --slices 40-60 > "$W/gen-$1.log" 2>&1
}
gen 1000 60 & gen 1001 60 & wait
gen 1100 300 & gen 1101 300 & wait

# 2. Both stages in parallel, one thread each, on a patient-wise 8:1 train/val split (80 validation
#    patients), one-cycle schedule from scratch. DWL with the CTPA window (L100/W700) as the vascular
#    branch, and avg+max pooling so that a clot a few pixels wide is not averaged away. The epoch with
#    the best validation AUROC is kept. Re-running resumes an interrupted run.
COMMON=(--manifest "$W"/train-{1000,1001,1100,1101}/manifest.csv --ratios 8,1,0 --splits "$W/splits.json"
        --cache "$W/cache" --amp "$AMP" --threads 1 --seed 0 --batch-size 32 --no-progress --device "$DEVICE")
MODEL=(--model cbamdrn_d22 --width "$WIDTH" --pool avgmax --windows pe,lung --input-size "$INPUT_SIZE" --crop dynamic)
$PETRIAGE train --stage 1 --out "$W/stage1" "${COMMON[@]}" "${MODEL[@]}" --lr 2e-3 \
    --epochs "$EPOCHS" --steps-per-epoch 300 --patience "$EPOCHS" > "$W/stage1.log" 2>&1 &
sleep 5
$PETRIAGE train --stage 2 --out "$W/stage2" "${COMMON[@]}" "${MODEL[@]}" --lr 2e-3 \
    --epochs "$EPOCHS" --steps-per-epoch 300 --patience "$EPOCHS" > "$W/stage2.log" 2>&1 &
wait

# 2b. Then both stages once more from their best checkpoint: a short cosine run at a lower peak rate
#     (the fine-tuning path of the annotation loop, here on the same data) while the curves still rise.
#     Each of these and the first runs can be re-run alone: the commands resume.
FT=(--manifest "$W"/train-{1000,1001,1100,1101}/manifest.csv --splits "$W/splits.json" --cache "$W/cache"
    --amp "$AMP" --threads 1 --seed 1 --batch-size 32 --no-progress --device "$DEVICE"
    --lr 4e-4 --epochs "$FT_EPOCHS" --steps-per-epoch 250 --patience "$FT_EPOCHS")
$PETRIAGE train --stage 1 --out "$W/stage1-ft" --init-from "$W/stage1/best.pt" "${FT[@]}" > "$W/stage1-ft.log" 2>&1 &
$PETRIAGE train --stage 2 --out "$W/stage2-ft" --init-from "$W/stage2/best.pt" "${FT[@]}" > "$W/stage2-ft.log" 2>&1 &
wait

# 2c. Both stages once more from scratch with the same settings plus the lesion-map loss on the
#     phantoms' lesion masks (--mask-loss 1): the feature maps learn where the lesion is, not only
#     that the slice has one. The first run caches the masks (masks.npy beside the images).
$PETRIAGE train --stage 1 --out "$W/stage1-mask" "${COMMON[@]}" "${MODEL[@]}" --lr 2e-3 --mask-loss 1 \
    --epochs "$EPOCHS" --steps-per-epoch 300 --patience "$EPOCHS" > "$W/stage1-mask.log" 2>&1 &
sleep 5
$PETRIAGE train --stage 2 --out "$W/stage2-mask" "${COMMON[@]}" "${MODEL[@]}" --lr 2e-3 --mask-loss 1 \
    --epochs "$EPOCHS" --steps-per-epoch 300 --patience "$EPOCHS" > "$W/stage2-mask.log" 2>&1 &
wait

# 2d. And the fine-tuning pass of 2b from those, still with the lesion-map loss.
$PETRIAGE train --stage 1 --out "$W/stage1-mask-ft" --init-from "$W/stage1-mask/best.pt" "${FT[@]}" --mask-loss 1 \
    > "$W/stage1-mask-ft.log" 2>&1 &
$PETRIAGE train --stage 2 --out "$W/stage2-mask-ft" --init-from "$W/stage2-mask/best.pt" "${FT[@]}" --mask-loss 1 \
    > "$W/stage2-mask-ft.log" 2>&1 &
wait

# 2e. Each stage once more from scratch with the lesion-map loss weighed 3 instead of 1, one after
#     the other with 2 threads.
for stage in 1 2; do
    $PETRIAGE train --stage $stage --out "$W/stage$stage-mask3" "${COMMON[@]}" "${MODEL[@]}" --lr 2e-3 --mask-loss 3 \
        --threads 2 --epochs "$EPOCHS" --steps-per-epoch 300 --patience "$EPOCHS" > "$W/stage$stage-mask3.log" 2>&1
done

# 2f. Both weight-3 runs trained on at a 25% larger input (160 px: finer pixels; the weights run at
#     any size), cosine from 5e-4 for 5 epochs of 300 steps, in parallel with one thread each.
BIG=$((INPUT_SIZE * 5 / 4))
# The fine-tuning settings of 2b, with these options after them (the last value given wins).
FT_BIG=("${FT[@]}" --lr 5e-4 --epochs 5 --steps-per-epoch 300 --patience 5 --mask-loss 3 --input-size "$BIG")
$PETRIAGE train --stage 1 --out "$W/stage1-mask3-$BIG" --init-from "$W/stage1-mask3/best.pt" "${FT_BIG[@]}" \
    > "$W/stage1-mask3-$BIG.log" 2>&1 &
sleep 5
$PETRIAGE train --stage 2 --out "$W/stage2-mask3-$BIG" --init-from "$W/stage2-mask3/best.pt" "${FT_BIG[@]}" \
    > "$W/stage2-mask3-$BIG.log" 2>&1 &
wait

# The best run of each stage on validation AUROC (never on the test set) goes on to step 2g.
RUNS1=stage1,stage1-ft,stage1-mask,stage1-mask-ft,stage1-mask3,stage1-mask3-$BIG
RUNS2=stage2,stage2-ft,stage2-mask,stage2-mask-ft,stage2-mask3,stage2-mask3-$BIG
pick() { $PY -c "import sys; from pathlib import Path; from PETriageLib.training.ship import best_by_validation as b
print(b([Path(sys.argv[1]) / run / 'best.pt' for run in sys.argv[2].split(',')]))" "$W" "$1"; }
S1=$(pick "$RUNS1")
S2=$(pick "$RUNS2")
# The 128 and 160 px slices of steps 2-2f are not read again: before the 224 px caches of 2g-2h
# (about 31 GB with slice context), keep the cache under CACHE_MAX, least recently used first.
$PETRIAGE cache prune "$W/cache" --max-size "${CACHE_MAX:-40G}"

# 2g. Phantoms at the test matrix (512 x 512; 360 patients, seeds never used elsewhere) and each
#     picked model trained on there at 224 px: stage 1 for 3 epochs (cosine from 5e-4, 2 threads),
#     then stage 1 once more (3e-4, 2 epochs) in parallel with stage 2 (5e-4, 2 epochs), one thread
#     each. Their validation patients are not those of steps 2-2f, so the stored validation AUROCs
#     cannot be compared: the pick above and the new runs are scored on the same 40 patients.
gen512() {
    [ -f "$W/train512-$1/manifest.csv" ] || $PETRIAGE phantom --anatomy formula --out "$W/train512-$1" --patients 180 --seed "$1" \
        --matrix 512 --slices 40-60 > "$W/gen512-$1.log" 2>&1
}
SEEDS512=(1200 1201)
M512=()
for seed in "${SEEDS512[@]}"; do
    gen512 "$seed" &
    M512+=("$W/train512-$seed/manifest.csv")
done
wait
HI=${HI_INPUT_SIZE:-$((BIG > 224 ? BIG : 224))}  # never smaller than step 2f's input
FT512=(--manifest "${M512[@]}" --ratios 8,1,0 --splits "$W/splits512.json"
       --cache "$W/cache" --amp "$AMP" --seed 2 --batch-size 32 --no-progress --device "$DEVICE"
       --steps-per-epoch 300 --mask-loss 3 --input-size "$HI")
$PETRIAGE train --stage 1 --out "$W/stage1-512-$HI" --init-from "$S1" "${FT512[@]}" --threads 2 --lr 5e-4 \
    --epochs 3 --patience 3 > "$W/stage1-512-$HI.log" 2>&1
$PETRIAGE train --stage 2 --out "$W/stage2-512-$HI" --init-from "$S2" "${FT512[@]}" --threads 1 --lr 5e-4 \
    --epochs 2 --patience 2 > "$W/stage2-512-$HI.log" 2>&1 &
$PETRIAGE train --stage 1 --out "$W/stage1-512-$HI-ft" --init-from "$W/stage1-512-$HI/best.pt" "${FT512[@]}" \
    --threads 1 --lr 3e-4 --epochs 2 --patience 2 > "$W/stage1-512-$HI-ft.log" 2>&1 &
wait
# pick512 STAGE CHECKPOINT...: the best on the validation patients of the 512 phantoms.
pick512() { $PY -c "import sys; from pathlib import Path; from PETriageLib.training.ship import best_on_split as b
w = Path(sys.argv[3])
print(b([Path(p) for p in sys.argv[4:]], int(sys.argv[1]), sys.argv[2].split(','), w / 'splits512.json', 'val', w / 'cache'))" \
    "$1" "$(IFS=,; echo "${M512[*]}")" "$W" "${@:2}"; }
S1=$(pick512 1 "$S1" "$W/stage1-512-$HI/best.pt" "$W/stage1-512-$HI-ft/best.pt")
S2=$(pick512 2 "$S2" "$W/stage2-512-$HI/best.pt")

# 2h. Small clots. 160 more phantoms at 512 x 512 (seeds 1300/1301), each with segmental or
#     subsegmental emboli only and no other disease, all for training: --ratios 1,0,0 adds them to a
#     copy of the 512 split, whose 40 validation patients stay as they were. On there, each picked
#     model trained 2 epochs at 3e-4 (one thread each, in parallel) twice: as it is (stage 1 only,
#     the control) and with one slice of context each side (--context 1, 2.5D). Picked again on
#     the same validation patients.
SEEDSHARD=(1300 1301)
MHARD=()
for seed in "${SEEDSHARD[@]}"; do
    [ -f "$W/hard512-$seed/manifest.csv" ] || $PETRIAGE phantom --anatomy formula --out "$W/hard512-$seed" --patients 80 --seed "$seed" \
        --matrix 512 --slices 40-60 --pe-fraction 1 --other-fraction 0 --difficulty hard > "$W/genhard-$seed.log" 2>&1 &
    MHARD+=("$W/hard512-$seed/manifest.csv")
done
wait
[ -f "$W/splits512-hard.json" ] || cp "$W/splits512.json" "$W/splits512-hard.json"
FTH=(--manifest "${M512[@]}" "${MHARD[@]}" --ratios 1,0,0 --splits "$W/splits512-hard.json"
     --cache "$W/cache" --amp "$AMP" --seed 2 --batch-size 32 --no-progress --device "$DEVICE"
     --steps-per-epoch 300 --mask-loss 3 --input-size "$HI" --threads 1 --lr 3e-4 --epochs 2 --patience 2)
$PETRIAGE train --stage 1 --out "$W/stage1-hard-$HI" --init-from "$S1" "${FTH[@]}" > "$W/stage1-hard-$HI.log" 2>&1 &
$PETRIAGE train --stage 1 --out "$W/stage1-ctx-$HI" --init-from "$S1" "${FTH[@]}" --context 1 \
    > "$W/stage1-ctx-$HI.log" 2>&1 &
wait
$PETRIAGE train --stage 2 --out "$W/stage2-ctx-$HI" --init-from "$S2" "${FTH[@]}" --context 1 > "$W/stage2-ctx-$HI.log" 2>&1
S1=$(pick512 1 "$S1" "$W/stage1-hard-$HI/best.pt" "$W/stage1-ctx-$HI/best.pt")
S2=$(pick512 2 "$S2" "$W/stage2-ctx-$HI/best.pt")

# 2i. Slice refiner: a BiLSTM over both stages' slice logits, trained on the same 480 training
#     patients (their features come from the picked pair), epoch and thresholds on the same 40
#     validation patients (a few minutes: the features, then seconds per epoch).
$PETRIAGE train-refiner --manifest "${M512[@]}" "${MHARD[@]}" --splits "$W/splits512-hard.json" --cache "$W/cache" \
    --stage1 "$S1" --stage2 "$S2" --out "$W/refiner" --features scores --no-progress > "$W/refiner.json"

# 3. Held-out test set (seed 5000, never used in training) at the real-CT matrix (512), half with PE of every size.
[ -f "$W/test-data/manifest.csv" ] || \
    $PETRIAGE phantom --anatomy formula --out "$W/test-data" --patients 40 --seed 5000 --matrix 512 --slices 50-70 --pe-fraction 0.5
$PETRIAGE evaluate --manifest "$W/test-data/manifest.csv" --split all --stage1 "$S1" --stage2 "$S2" --cache "$W/test-cache" --out "$W/test-report" --bootstrap 300
$PETRIAGE evaluate --manifest "$W/test-data/manifest.csv" --split all --stage1 "$S1" --stage2 "$S2" --cache "$W/test-cache" --out "$W/test-report-refiner" --bootstrap 300 --refiner "$W/refiner/refiner.pt"

# 3b. The real CT with per-slice labels in ../shared/data (COVID-CT-MD's non-contrast pneumonia
#     sample, radiologists' infection labels; no PE): how the phantom-trained pair does on a real
#     scan. The model cards quote it (metrics.real_ct). Skipped where the folder is absent.
REAL="${PETRIAGE_SHARED_DATA:-../shared/data}/real"
if [ -d "$REAL/covid-ct-md-cap002" ]; then
    mkdir -p "$W/real"
    printf 'patient_id,kind,path,labels\ncap002,dicom,%s,%s\n' "$(realpath "$REAL/covid-ct-md-cap002")" \
        "$(realpath "$REAL/covid-ct-md-cap002.labels.csv")" > "$W/real/manifest.csv"
    $PETRIAGE evaluate --manifest "$W/real/manifest.csv" --split all --stage1 "$S1" --stage2 "$S2" \
        --cache "$W/real-cache" --out "$W/real-report" --bootstrap 300
fi

# 4. Ship: copy into Resources/models and register with SHA256 and model card. The refiner was
#    copied to Resources/models/cbamdrn_d22_demo_refiner.pt and entered under "series_models" in
#    Resources/models.json by hand (its card quotes $W/refiner.json and test-report-refiner).
$PY -m PETriageLib.training.ship "$W" "$(basename "$(dirname "$S1")")" "$(basename "$(dirname "$S2")")"
