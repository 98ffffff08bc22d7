#!/usr/bin/env bash
# Choose and register the shipped demo pair's patient rule (issue 21; docs/training.md "Patient rule").
# Validation: 120 formula phantoms (seeds 4000-4002, generated like the test set, never used in
# training or testing). Test sets: the synthetic test set (seed 5000) and the real-anatomy test set
# (the 12 held-back CAD-PE cases of scripts/real_anatomy_split.json, seed 2200, both phases).
# Each step is skipped when its output exists; a failed step stops the script (each background job is waited for by pid). About 40 minutes on 2 busy cores, mostly the evaluations.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${W:-work-cache/op21}
PY=${PY:-.venv/bin/python}
PETRIAGE=${PETRIAGE:-.venv/bin/petriage}
CASES="${PETRIAGE_SHARED_DATA:-../shared/data}/real/cadpe-vessels"
mkdir -p "$W"
formula() {  # SEED
    [ -f "$W/$2/manifest.csv" ] || $PETRIAGE phantom --anatomy formula --out "$W/$2" --patients 40 --seed "$1" \
        --matrix 512 --slices 50-70 --pe-fraction 0.5 > "$W/gen-$2.log" 2>&1
}
formula 4000 val-4000 & a=$!; formula 4001 val-4001 & b=$!; wait $a; wait $b
formula 4002 val-4002 & a=$!; formula 5000 test-5000 & b=$!; wait $a; wait $b
read -r -a TE <<< "$($PY -c "import json; print(' '.join(json.load(open('scripts/real_anatomy_split.json'))['test_cases']))")"
[ -f "$W/real-test-2200/manifest.csv" ] || $PETRIAGE phantom --anatomy real --cases-dir "$CASES" \
    $(for c in "${TE[@]}"; do printf -- '--case %s ' "$c"; done) --out "$W/real-test-2200" --patients 12 --seed 2200 \
    --slice-thickness 5 --pixel 1.5 > "$W/gen-real-test-2200.log" 2>&1
evaluate() {  # SET
    [ -f "$W/eval-$1/report.json" ] || nice $PETRIAGE evaluate --manifest "$W/$1/manifest.csv" --split all \
        --stage1 cbamdrn_d22_demo_stage1 --stage2 cbamdrn_d22_demo_stage2 --cache "$W/eval-cache" \
        --out "$W/eval-$1" --bootstrap 300 --threads 1 > "$W/eval-$1.log" 2>&1
}
evaluate val-4000 & a=$!; evaluate real-test-2200 & b=$!; wait $a; wait $b
evaluate val-4001 & a=$!; evaluate val-4002 & b=$!; wait $a; wait $b
evaluate test-5000
$PETRIAGE patient-rule --validation "$W"/eval-val-400{0,1,2} \
    --test "synthetic test (seed 5000, 40 patients)=$W/eval-test-5000" \
    --test "real-anatomy test (12 held-back CAD-PE cases, 24 series)=$W/eval-real-test-2200" \
    --out "$W/rule" --register "${RULE_NAME:-cbamdrn_d22_demo_patient_rule}" \
    --validation-data "120 formula phantoms (seeds 4000-4002: 40 patients each, 512 x 512, 50-70 slices, half with PE), generated like the synthetic test set and never used in training or testing"
