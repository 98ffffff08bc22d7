#!/usr/bin/env bash
# README command (1): install everything, then triage a synthetic study end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/petriage demo --out "${1:-demo-output}"
