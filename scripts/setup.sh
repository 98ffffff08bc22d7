#!/usr/bin/env bash
# Create .venv and install PETriage with everything it needs (CPU machine of the project kind).
# torch/torchvision are pinned to the pair that lies on these machines' disk; the package
# itself accepts any recent torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# torch's build on this disk fills about 7 GB of .venv; say so before pip fails half-way.
free_gb=$(df -Pk . | awk 'NR==2 {print int($4 / 1048576)}')
if [ ! -x .venv/bin/petriage ] && [ "$free_gb" -lt 8 ]; then
    echo "setup: warning: ${free_gb} GB free here; .venv needs about 7 GB (torch). Slice caches of" \
         "training runs can be pruned with 'petriage cache prune DIR --max-size ...'." >&2
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[test]"
# --- Debian packages (DICOMweb tests): a real DICOMweb server (Orthanc + its DICOMweb plugin) for
# Testing/cluster; installed only when missing and only as root (elsewhere the tests skip).
if [ ! -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q orthanc orthanc-dicomweb >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q orthanc orthanc-dicomweb >/dev/null; }
fi
# --- end Debian packages (DICOMweb tests)
