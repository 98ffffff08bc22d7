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
# --- Debian packages the tests need: dciodvfy (dicom3tools) checks the DICOM results; Orthanc is the
# real PACS of Testing/pacs and, with its DICOMweb plugin, the real DICOMweb server of
# Testing/cluster; dcmtk's dcmcjpeg makes the JPEG Lossless files of Testing/pacs (pydicom cannot
# encode them). Installed only when missing, and only as root (else: say what is missing).
missing=()
command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
command -v dcmcjpeg >/dev/null 2>&1 || missing+=(dcmtk)
command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || missing+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing+=(orthanc-dicomweb)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                 "${missing[@]}" >/dev/null; }
    else
        echo "setup: warning: ${missing[*]} missing (Debian packages; the PACS and DICOMweb tests need them): install as root" >&2
    fi
fi
# --- end of Debian packages
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[test]"
