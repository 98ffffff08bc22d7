"""`petriage segment`: per-voxel embolus probability of one CT series with a segmentation checkpoint,
written on the CT's geometry (NRRD or NIfTI) with the thresholded mask and the clot volume."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "segment", help="embolus probability map, mask and clot volume of one series (segmentation model)",
        description="Runs a segmentation or CPMN checkpoint (petriage train-seg) on every slice of the series "
                    "and writes embolus_probability and embolus_mask on the CT's grid, plus segment.json with "
                    "the clot volume in mL (components under the checkpoint's min_component_ml dropped, as in triage). A CPMN model reads the series as the non-contrast phase. "
                    "Phantom-trained models are demonstrations, not clinical tools.")
    p.add_argument("series", help="DICOM folder or file of one series")
    p.add_argument("--model", required=True,
                   help="segmentation checkpoint (.pt) or a registered name (Resources/models.json's "
                        "segmentation_models, e.g. resunet_demo_seg)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--threshold", type=float, help="pixel threshold (default: the checkpoint's)")
    p.add_argument("--input-size", type=int,
                   help="resize slices to this square size for the model (default: native slice size)")
    p.add_argument("--nifti", action="store_true", help="write .nii.gz instead of .nrrd")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from PETriageLib.ingest.load import load_series
    from PETriageLib.models.seg_checkpoint import load_seg_checkpoint
    from PETriageLib.models.seg_predict import predict_embolus_probability
    from PETriageLib.models.seg_checkpoint import class_point
    from PETriageLib.models.zoo import resolve_segmentation_model
    from PETriageLib.reporting.heatmap_files import heatmap_image
    from PETriageLib.reporting.json_text import to_json
    from PETriageLib.reporting.nrrd_writer import write_nrrd_streamed
    from PETriageLib.triage.embolus import embolus_result

    model, meta = load_seg_checkpoint(*resolve_segmentation_model(args.model))
    volume = load_series(args.series)
    point_threshold, point_min_ml = class_point(meta, "pe")
    threshold = float(point_threshold if args.threshold is None else args.threshold)
    prob = predict_embolus_probability(model, volume, args.input_size, meta["windows"],
                                       pixel_mm=None if args.input_size else meta.get("pixel_mm"))
    # the checkpoint's operating point: components under its min_component_ml are dropped, as in triage
    embolus = embolus_result(str(args.model), "nct" if meta["task"] == "cross_phase" else "ctpa", threshold, prob,
                             volume, point_min_ml)
    mask = embolus.mask.astype(np.float32)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, array in (("embolus_probability", prob), ("embolus_mask", mask)):
        if args.nifti:
            import SimpleITK as sitk

            path = out / f"{name}.nii.gz"
            sitk.WriteImage(heatmap_image(array, volume), str(path), useCompression=True)
        else:
            path = write_nrrd_streamed(out / f"{name}.nrrd", array, volume.spacing, volume.origin, volume.direction)
        files[name] = str(path)
    summary = {"series_uid": volume.metadata.get("series_uid"), "model": meta["architecture"],
               "task": meta["task"], "threshold": threshold, "min_component_ml": point_min_ml,
               "clot_volume_ml": round(embolus.volume_ml, 3), "components": embolus.n_components,
               "slices": embolus.slices, "max_probability": embolus.max_probability, "files": files}
    (out / "segment.json").write_text(to_json(summary, indent=1))
    print(to_json(summary, indent=1))
    return 0
