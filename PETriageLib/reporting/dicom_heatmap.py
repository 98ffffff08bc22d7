"""Grad-CAM heatmaps as DICOM Parametric Maps on the source geometry (one per window branch, one
frame per source slice), so a viewer (3D Slicer included) overlays them on the CT."""
from __future__ import annotations

import highdicom as hd
import numpy as np
from highdicom.sr import CodedConcept

from PETriageLib.explain.heatmaps import Heatmaps
from PETriageLib.reporting.dicom_source import (DEVICE_SERIAL, MANUFACTURER, MODEL_NAME, SERIES_NUMBERS,
                                                SOFTWARE_VERSION, SourceSeries)

LEVELS = 1000  # heat in [0, 1] stored as 16-bit integers in 0.001 steps: half a float map's size
# (the Parametric Map IOD allows integer pixels of 16 bits only; dciodvfy refuses 8)
UNITLESS = CodedConcept("1", "UCUM", "no units")


def build_parametric_maps(heatmaps: Heatmaps, source: SourceSeries) -> list[hd.pm.ParametricMap]:
    """One Parametric Map per branch, all in one new series in the source study."""
    series_uid = hd.UID()
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="GRADCAM", lut_explanation=f"Grad-CAM of {heatmaps.target} ({heatmaps.model}), 0 to 1",
        unit=UNITLESS, value_range=(0, LEVELS), slope=1.0 / LEVELS, intercept=0.0)
    maps = []
    for n, (branch, volume) in enumerate(heatmaps.volumes.items(), 1):
        pixels = np.round(np.clip(volume, 0, 1) * LEVELS).astype(np.uint16)
        pm = hd.pm.ParametricMap(
            source_images=source.datasets, pixel_array=pixels, series_instance_uid=series_uid,
            series_number=SERIES_NUMBERS["heatmaps"], sop_instance_uid=hd.UID(), instance_number=n,
            manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME, software_versions=SOFTWARE_VERSION,
            device_serial_number=DEVICE_SERIAL, contains_recognizable_visual_features=False,
            real_world_value_mappings=[mapping],
            voi_lut_transformations=[hd.VOILUTTransformation(window_center=LEVELS / 2, window_width=LEVELS)],
            content_label=f"GRADCAM_{branch.upper()}"[:16], content_description=f"Grad-CAM {branch} branch",
            series_description="PETriage Grad-CAM heatmaps")
        pm.Laterality = ""  # type 2C once the body part (chest) is paired; the map has no side
        maps.append(pm)
    return maps
