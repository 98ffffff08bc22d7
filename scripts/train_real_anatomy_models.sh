#!/usr/bin/env bash
# Fine-tune the shipped demo pair on real-anatomy phantoms + real labelled CT + some formula phantoms
# (issue 21; docs/training.md "Retrained on real anatomy (2026-12-02)"), and compare with the shipped pair.
# The split is fixed in scripts/real_anatomy_split.json: 59 CAD-PE cases for training phantoms, 12 held
# back for the real-anatomy test set; cap002 and Lung-PET-CT-Dx A0001 train, A0002 is the held-back
# real patient. Each step is skipped or resumed when its output exists. CPU, one thread per process.
# A smoke run of the whole file: W=/tmp/r21smoke FORMULA_PATIENTS=2 TEST_PATIENTS=2 STEPS=2 EPOCHS=1.
# Trained on phantoms and 2 real non-PE patients: NOT for clinical use.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${W:-work-cache/r21}
PY=${PY:-.venv/bin/python}
PETRIAGE=${PETRIAGE:-.venv/bin/petriage}
REAL="${PETRIAGE_SHARED_DATA:-../shared/data}/real"
CASES="$REAL/cadpe-vessels"
LPCD="$REAL/lung-pet-ct-dx"
STEPS=${STEPS:-50}
EPOCHS=${EPOCHS:-2}
export OMP_NUM_THREADS=1
mkdir -p "$W/real"
split() { $PY -c "import json,sys; print(' '.join(json.load(open('scripts/real_anatomy_split.json'))[sys.argv[1]]))" "$1"; }
read -r -a TR <<< "$(split train_cases)"
read -r -a TE <<< "$(split test_cases)"
cases() { for c in "$@"; do printf -- '--case %s ' "$c"; done; }
real_gen() {  # OUT SEED PATIENTS CASE...
    [ -f "$1/manifest.csv" ] || $PETRIAGE phantom --anatomy real --cases-dir "$CASES" $(cases "${@:4}") --out "$1" \
        --patients "$3" --seed "$2" --slice-thickness 5 --pixel 1.5 > "$1.log" 2>&1
}

# 1. Real-anatomy phantoms (both phases per patient, PE / other disease / normal as the generator
#    mixes them), one per training case; the test set one per held-back case with another seed.
#    Formula phantoms: 24 of the seed used for the shipped pair's 512 training (so the synthetic
#    test set is still seen in kind) and the synthetic test set (seed 5000, its 40 patients; formula
#    anatomy must be asked for: real anatomy is the generator's default).
real_gen "$W/real-train-2100" 2100 30 "${TR[@]:0:30}" &
real_gen "$W/real-train-2101" 2101 29 "${TR[@]:30}" &
wait
real_gen "$W/real-test-2200" 2200 12 "${TE[@]}" &
[ -f "$W/formula-1200/manifest.csv" ] || $PETRIAGE phantom --anatomy formula --out "$W/formula-1200" --patients "${FORMULA_PATIENTS:-24}" --seed 1200 \
    --matrix 512 --slices 40-60 > "$W/gen-formula.log" 2>&1 &
[ -f "$W/test-data/manifest.csv" ] || $PETRIAGE phantom --anatomy formula --out "$W/test-data" --patients "${TEST_PATIENTS:-40}" \
    --seed 5000 --matrix 512 --slices 50-70 --pe-fraction 0.5 > "$W/gen-test.log" 2>&1 &
wait

# 2. Real series: Lung-PET-CT-Dx boxes -> labels CSVs (boxed slices other, the rest wnl); manifests
#    with a fixed split column (training series always in training).
for s in A0001-series2 A0001-series3 A0002-B40f A0002-B70f; do
    $PY -m PETriageLib.training.voc_slice_labels "$LPCD/$s" "$LPCD/annotations/${s%%-*}" "$W/real/$s.labels.csv"
done
ab() { realpath "$1"; }
{ echo "patient_id,kind,path,labels,split"
  echo "cap002,dicom,$(ab "$REAL/covid-ct-md-cap002"),$(ab "$REAL/covid-ct-md-cap002.labels.csv"),train"
  for s in A0001-series2 A0001-series3; do echo "A0001,dicom,$(ab "$LPCD/$s"),$(ab "$W/real/$s.labels.csv"),train"; done
} > "$W/real/train.csv"
{ echo "patient_id,kind,path,labels"
  for s in A0002-B40f A0002-B70f; do echo "A0002,dicom,$(ab "$LPCD/$s"),$(ab "$W/real/$s.labels.csv")"; done
} > "$W/real/test.csv"
printf 'patient_id,kind,path,labels\ncap002,dicom,%s,%s\n' "$(ab "$REAL/covid-ct-md-cap002")" \
    "$(ab "$REAL/covid-ct-md-cap002.labels.csv")" > "$W/real/cap002.csv"

# 3. Both stages fine-tuned from the shipped checkpoints (their width, windows, 224 px, slice context),
#    in parallel with one thread each; 15% of the phantom patients are validation (best epoch).
TRAIN=(--manifest "$W"/real-train-210{0,1}/manifest.csv "$W/formula-1200/manifest.csv" "$W/real/train.csv"
       --ratios 85,15,0 --splits "$W/splits.json" --cache "$W/cache" --amp bf16 --threads 1 --seed 21
       --batch-size 32 --no-progress --device cpu --lr 3e-4 --epochs "$EPOCHS" --steps-per-epoch "$STEPS"
       --patience "$EPOCHS" --mask-loss 3 --save-every 10)
nice $PETRIAGE train --stage 1 --out "$W/stage1" --init-from Resources/models/cbamdrn_d22_demo_stage1.pt \
    "${TRAIN[@]}" > "$W/stage1.log" 2>&1 &
sleep 20  # the first run writes splits.json; the second reads it
nice $PETRIAGE train --stage 2 --out "$W/stage2" --init-from Resources/models/cbamdrn_d22_demo_stage2.pt \
    "${TRAIN[@]}" > "$W/stage2.log" 2>&1 &
wait

# 4. Both pairs on the same test sets: synthetic (seed 5000), real-anatomy held-back cases, the
#    held-back real patient (A0002) and cap002 (a training series for the new pair: not for claims).
for pair in shipped new; do
    if [ $pair = shipped ]; then S1=Resources/models/cbamdrn_d22_demo_stage1.pt; S2=Resources/models/cbamdrn_d22_demo_stage2.pt
    else S1="$W/stage1/best.pt"; S2="$W/stage2/best.pt"; fi
    for t in test-data/manifest.csv real-test-2200/manifest.csv real/test.csv real/cap002.csv; do
        name=$(dirname "$t" | tr / -)-$(basename "$t" .csv)
        [ -f "$W/eval-$pair-$name/report.json" ] || nice $PETRIAGE evaluate --manifest "$W/$t" --split all \
            --stage1 "$S1" --stage2 "$S2" --cache "$W/eval-cache" --out "$W/eval-$pair-$name" --bootstrap 300 \
            --threads 1 > "$W/eval-$pair-$name.log" 2>&1
    done
done
