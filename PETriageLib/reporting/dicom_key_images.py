"""Key images as DICOM Secondary Capture (RGB) in the source study: each key slice in its window
with the Grad-CAM heatmap over it, one panel per window branch, referencing its CT instance."""
from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from PETriageLib.explain.heatmaps import Heatmaps
from PETriageLib.preprocess.windows import PRESETS, get_window
from PETriageLib.reporting.dicom_source import MANUFACTURER, SERIES_NUMBERS, SourceSeries
from PETriageLib.reporting.key_images import MAX_KEY_IMAGES
from PETriageLib.triage.result import TriageResult

HEAT_FLOOR = 0.05  # heat below this is left transparent, as in the PNG key images
ALPHA = 0.4


def overlay_rgb(hu: np.ndarray, heat: np.ndarray | None, window) -> np.ndarray:
    """uint8 RGB (rows, cols, 3): the windowed slice in grey, the heatmap in jet where it is above the floor."""
    from matplotlib import colormaps

    grey = (window.apply(hu) + 1.0) * 0.5  # Window.apply maps to [-1, 1]
    rgb = np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=2)
    if heat is not None:
        hot = heat >= HEAT_FLOOR
        colour = colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
        rgb[hot] = (1 - ALPHA) * rgb[hot] + ALPHA * colour[hot]
    return np.round(rgb * 255).astype(np.uint8)


def _orientation(ds: Dataset) -> tuple[str, str]:
    """Patient orientation letters of the row and column directions (e.g. L, P for an axial HFS slice)."""
    iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
    letters = []
    for vec in (iop[:3], iop[3:]):
        axis = int(np.argmax(np.abs(vec)))
        letters.append(("L", "P", "H")[axis] if vec[axis] > 0 else ("R", "A", "F")[axis])
    return letters[0], letters[1]


def _panels(heatmaps: Heatmaps) -> list[tuple[str, object]]:
    """(branch, window) per panel: each branch in its own window."""
    named = {get_window(w).name: get_window(w) for w in heatmaps.windows}
    return [(b, named.get(b, PRESETS["vascular"])) for b in heatmaps.volumes]


def build_key_images(result: TriageResult, heatmaps: Heatmaps, source: SourceSeries) -> list[hd.sc.SCImage]:
    """One Secondary Capture per key slice (highest p_pe first), all in one new series."""
    rows = {r.index: r for r in result.rows}
    ranked = sorted(heatmaps.slices, key=lambda k: -(rows[k].p_pe or 0.0))[:MAX_KEY_IMAGES]
    series_uid, panels = hd.UID(), _panels(heatmaps)
    images = []
    for n, k in enumerate(ranked, 1):
        ref, row = source.datasets[k], rows[k]
        pixels = np.hstack([overlay_rgb(result.volume.hu[k], heatmaps.volumes[b][k], w) for b, w in panels])
        image = hd.sc.SCImage.from_ref_dataset(
            ref, pixels, "RGB", 8, "PATIENT", series_instance_uid=series_uid,
            series_number=SERIES_NUMBERS["key_images"], sop_instance_uid=hd.UID(), instance_number=n,
            manufacturer=MANUFACTURER, patient_orientation=_orientation(ref),
            transfer_syntax_uid="1.2.840.10008.1.2.1")
        image.SeriesDescription = "PETriage key images (Grad-CAM)"
        p_pe = "n/a" if row.p_pe is None else f"{row.p_pe:.3f}"
        image.ImageComments = (f"slice {k} (z {row.z:.1f} mm): {row.label or 'not analysed'}, p_pe {p_pe}; "
                               f"panels: {', '.join(f'{b} Grad-CAM in {w.name} window' for b, w in panels)}")
        image.BurnedInAnnotation = "NO"
        image.Laterality = ""  # type 2C once the body part (chest) is paired; a chest slice has no side
        src = Dataset()
        src.ReferencedSOPClassUID, src.ReferencedSOPInstanceUID = ref.SOPClassUID, ref.SOPInstanceUID
        image.SourceImageSequence = [src]
        images.append(image)
    return images
