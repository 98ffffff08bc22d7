#!/usr/bin/env bash
# README command (1): install everything, then triage a synthetic study end to end (real anatomy
# on a CAD-PE case when ../shared/data is there, else the formula phantom with a warning).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/petriage demo --out "${1:-demo-output}"
