"""Where `--anatomy real` finds the CAD-PE vessel/lung masks when no --cases-dir is given."""
import os
from pathlib import Path

from PETriageLib.errors import AnatomyError

# The checkout sits beside ../shared/data (README "Data"); PETRIAGE_SHARED_DATA points elsewhere.
_REPO = Path(__file__).resolve().parents[2]


def default_cases_dir() -> Path:
    """The CAD-PE folder of the shared data, whether or not it exists."""
    shared = Path(os.environ.get("PETRIAGE_SHARED_DATA", _REPO.parent / "shared" / "data"))
    return shared / "real" / "cadpe-vessels"


def require_cases_dir(cases_dir: "str | Path | None") -> Path:
    """The folder to build real-anatomy studies from, or an AnatomyError that says how to proceed."""
    folder = Path(cases_dir) if cases_dir else default_cases_dir()
    if not folder.is_dir() or not any(folder.glob("*_lungmask.nii.gz")):
        raise AnatomyError(f"no CAD-PE cases (ID.nii.gz + ID_lungmask.nii.gz) in {folder}; pass --cases-dir "
                           "FOLDER, or use --anatomy formula for the analytic phantom")
    return folder
