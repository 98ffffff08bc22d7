"""The embolus mask as a DICOM Segmentation (segment 1 "Embolus", one frame per source slice),
referencing the source CT instances, so a PACS viewer or 3D Slicer shows it on the CT; a lesion
model's other classes as further segments ("Other disease")."""
from __future__ import annotations

import highdicom as hd
import numpy as np
from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

from PETriageLib.reporting.dicom_source import (DEVICE_SERIAL, MANUFACTURER, MODEL_NAME, SERIES_NUMBERS,
                                                SOFTWARE_VERSION, SourceSeries)
from PETriageLib.triage.result import TriageResult
from PETriageLib.vocabulary import LESION_TITLES

SEG_SERIES_NUMBER = SERIES_NUMBERS["heatmaps"] + 1  # after the SR, key images and heatmap maps
# SNOMED CT: the segment is a morphologically abnormal structure, an embolus
ABNORMAL_STRUCTURE = CodedConcept("49755003", "SCT", "Morphologically Abnormal Structure")
EMBOLUS = CodedConcept("55584005", "SCT", "Embolus")
LESION = CodedConcept("52988006", "SCT", "Lesion")
PROPERTY_TYPES = {"pe": EMBOLUS, "other": LESION}  # each lesion class's segmented property type


def build_embolus_seg(result: TriageResult, source: SourceSeries) -> hd.seg.Segmentation:
    """A binary DICOM SEG of ``result.embolus.mask``; refused when no segmentation ran or the mask is
    not on the CT's grid."""
    embolus = result.embolus
    if embolus is None:
        raise ValueError("no embolus segmentation ran on this series: there is no mask to write")
    from PETriageLib.models.seg_predict import check_on_grid  # torch: only where a mask is written

    check_on_grid(embolus.mask, result.volume, "embolus mask")
    algorithm = hd.AlgorithmIdentificationSequence(name=f"PETriage {embolus.pathway} embolus segmentation",
                                                   version=SOFTWARE_VERSION,
                                                   family=codes.cid7162.ArtificialIntelligence)
    results = [embolus, *embolus.others.values()]
    for other in results[1:]:
        check_on_grid(other.mask, result.volume, f"{LESION_TITLES[other.lesion]} mask")
    segments = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=LESION_TITLES[r.lesion].capitalize(),
        segmented_property_category=ABNORMAL_STRUCTURE, segmented_property_type=PROPERTY_TYPES[r.lesion],
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm) for n, r in enumerate(results, start=1)]
    masks = [(np.asarray(r.mask) > 0).astype(np.uint8) for r in results]
    # one segment: (frames, rows, columns); several: a last axis of one channel per segment
    pixels = masks[0] if len(masks) == 1 else np.stack(masks, axis=-1)
    seg = hd.seg.Segmentation(
        source_images=source.datasets, pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=segments,
        series_instance_uid=hd.UID(), series_number=SEG_SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME, software_versions=SOFTWARE_VERSION,
        device_serial_number=DEVICE_SERIAL, omit_empty_frames=False, content_label="EMBOLUS",
        content_description=f"Embolus mask ({embolus.model}, p >= {embolus.threshold:g})"[:64],
        series_description="PETriage embolus segmentation")
    return seg
