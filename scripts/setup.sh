#!/usr/bin/env bash
# Create .venv and install PETriage with everything it needs (CPU machine of the project kind).
# torch/torchvision are pinned to the pair that lies on these machines' disk; the package
# itself accepts any recent torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[test]"
