"""`petriage triage PATH --out DIR`: triage one series or a folder of many.

Writes one report folder per series and OUT/worklist.csv ranking all series by PE score.
Exit code 0 when every series got a report (a positive finding is not a failure), 1 when a
series could not be read or triaged, 2 when PATH holds no DICOM series at all.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Callable

from PETriageLib.vocabulary import (CAM_MODES, DOMAIN_CHECK_MODES, ENGINE_CHOICES, INFERENCE_PATHS, OPERATING_POINTS,
                                   PHASE_CHOICES, is_probability)

log = logging.getLogger("petriage.triage")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("triage", help="triage chest CT series for pulmonary embolism",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", type=Path, help="a DICOM series folder, a folder of many series, or a file")
    p.add_argument("--out", type=Path, required=True, help="output folder for reports and worklist.csv")
    p.add_argument("--dicom-out", type=Path, metavar="DIR",
                   help="also write each series' DICOM results (SR, key images, heatmap maps, and the embolus "
                        "mask as DICOM SEG when segmentation ran) under DIR")
    add_cascade_options(p)
    p.set_defaults(func=run)


def probability(text: str) -> float:
    """An operating point on the command line: refused by argparse (exit 2) before any model loads."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not is_probability(value):
        raise argparse.ArgumentTypeError(f"must be a finite number in [0, 1], got {text!r}")
    return value


def whole_number(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}")
        return value
    return parse


def add_cascade_options(p: argparse.ArgumentParser) -> None:
    """Options shared with `petriage demo`."""
    p.add_argument("--models", nargs=2, metavar=("STAGE1", "STAGE2"),
                   help="stage 1 and stage 2 model names (Resources/models.json) or checkpoint files; "
                        "default: the shipped default models")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument("--threshold", type=probability, help="stage 2 PE operating point (default: the patient rule's, else the checkpoint's)")
    p.add_argument("--threshold-disease", type=probability, help="stage 1 operating point (default: the patient rule's, else the checkpoint's)")
    p.add_argument("--operating-point", choices=OPERATING_POINTS, default="patient",
                   help="patient (default): the pair's registered patient rule (petriage patient-rule: thresholds "
                        "and run length chosen for 95%% patient PE sensitivity), where it has one; slice: each "
                        "checkpoint's slice operating point, any slice flags. --threshold, --threshold-disease and "
                        "--min-run override it value by value")
    p.add_argument("--min-run", type=whole_number(1), default=None,
                   help="consecutive positive slices needed for a positive patient (default: the patient rule's, "
                        "else 1: any slice)")
    p.add_argument("--patient-model", default=None, metavar="PATIENT_PT",
                   help="a patient classifier (petriage train-patient) for these models: its p(PE) decides "
                        "the verdict instead of the any-slice rule; stage 2 then runs on every lung slice")
    p.add_argument("--refiner", default=None, metavar="REFINER_PT",
                   help="a slice refiner (petriage train-refiner) for these models: every slice re-scored with its "
                        "neighbours in view, at the refiner's thresholds; stage 2 then runs on every lung slice "
                        "(a registered name such as cbamdrn_d22_demo_refiner, or a file)")
    p.add_argument("--domain-check", choices=DOMAIN_CHECK_MODES, default="refuse",
                   help="a series unlike stage 1's training data (its checkpoint's feature statistics, see "
                        "petriage fit-domain) is not analysable (refuse, the default), gets a warning with its "
                        "verdict (warn), or is not checked (off)")
    p.add_argument("--all-slices", action="store_true", help="run stage 2 on every lung slice, not only diseased")
    p.add_argument("--cam", choices=CAM_MODES, default="top-k",
                   help="Grad-CAM on the top-k slices by p_pe, on every pe slice, or none (default top-k)")
    p.add_argument("--top-k", type=whole_number(0), default=5, help="slices for --cam top-k (default 5)")
    p.add_argument("--batch-size", type=whole_number(1), default=16,
                   help="slices per model batch (default 16: at 32 the activations add about 250 MB to the peak)")
    p.add_argument("--inference", choices=[p for p in INFERENCE_PATHS if p != "naive"], default="fast",
                   help="eager fp32, or fast (BN folded, channels_last, bf16 where supported; checked "
                        "against fp32 on the first slices; the default)")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto",
                   help="what runs the fast path: torch, onnx (ONNX Runtime on the CPU, pip install "
                        "'petriage[fast]'), or auto (torch where the CPU has bf16 or on a GPU, else ONNX Runtime "
                        "when installed; the default). Either is checked against fp32 and falls back to torch")
    p.add_argument("--phase", choices=PHASE_CHOICES, default="auto",
                   help="which pathway triages a series: auto (the default) measures the blood-pool HU and sends "
                        "contrast-enhanced series to the CTPA cascade and non-contrast ones to --nct-model (the "
                        "CTPA cascade, with a warning, when none is given or the phase is undecided); ctpa or nct "
                        "force one")
    p.add_argument("--seg-model", default=None, metavar="SEG_PT",
                   help="an embolus segmentation checkpoint (petriage train-seg; a file or a registered name, "
                        "'default' for the shipped one) run on CTPA series: embolus_probability/embolus_mask on "
                        "the CT's grid and the clot volume in the report; off unless given")
    p.add_argument("--nct-model", default=None, metavar="NCT_PT",
                   help="a cross_phase (CPMN) checkpoint for non-contrast series (a file or a registered name, "
                        "'default' for the shipped one): its predicted embolus components decide their verdict, "
                        "and its mask is written as for --seg-model; off unless given (the shipped demo model "
                        "flags most non-PE phantoms, docs/segmentation.md): non-contrast series then go to the "
                        "CTPA cascade with a warning")
    p.add_argument("--nifti", action="store_true", help="write heatmaps as NIfTI (.nii.gz) instead of NRRD")
    p.add_argument("--no-images", action="store_true", help="skip the key image PNGs")


class TqdmProgress:
    """A (done, total, message) callback that drives one tqdm bar."""

    def __init__(self, desc: str, disable: bool = False, unit: str = "slice") -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=0, desc=desc, unit=unit, disable=disable, leave=False)

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if self.bar.total != total:
            self.bar.reset(total=total)
        self.bar.set_postfix_str(message, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def routing_options(args: argparse.Namespace) -> dict[str, Any]:
    """The contrast-phase routing fields of CascadeOptions, from the command line ('default': the
    registered model of that pathway, an error when none is; 'none': no model)."""
    from PETriageLib.triage.embolus import embolus_model_spec

    return {"phase": args.phase, "seg_model": embolus_model_spec(args.seg_model, "ctpa"),
            "nct_model": embolus_model_spec(args.nct_model, "nct")}


def cascade_from_args(args: argparse.Namespace) -> Any:
    from PETriageLib.triage.cascade import build_cascade
    from PETriageLib.triage.stages import default_models

    stage1, stage2 = args.models or default_models()
    return build_cascade(stage1, stage2, device=args.device, batch_size=args.batch_size, all_slices=args.all_slices,
                 threshold_disease=args.threshold_disease, threshold_pe=args.threshold, min_run=args.min_run,
                 operating_point=args.operating_point, inference=args.inference, patient_model=args.patient_model, refiner=args.refiner,
                 domain_check=args.domain_check, engine=args.engine, **routing_options(args))


def screen_options(args: argparse.Namespace) -> Any:
    from PETriageLib.screening.one_series import ScreenOptions

    return ScreenOptions(cam=args.cam, top_k=args.top_k, nifti=args.nifti, key_images=not args.no_images)


def scan_with_bar(scan: Callable[[Any], list], where: Any) -> list | None:
    """``scan(progress)`` with a progress bar; None, after saying why, when there is nothing to
    triage: no such path, or no DICOM series in it (both CLIs exit 2 then, as for a usage error)."""
    from PETriageLib.errors import SeriesError

    bar = TqdmProgress("scanning", disable=logging.getLogger().level > logging.INFO, unit="file")
    try:
        found = scan(bar)
    except (SeriesError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return None
    finally:
        bar.close()
    if not found:
        log.error("no DICOM series found in %s", where)
        return None
    return found


def run(args: argparse.Namespace) -> int:
    from PETriageLib.reporting.worklist_csv import write_worklist_csv
    from PETriageLib.screening.many_series import folder_sources, screen_sources

    quiet = logging.getLogger().level > logging.INFO
    sources = scan_with_bar(lambda bar: folder_sources(args.path, progress=bar), args.path)
    if sources is None:
        return 2
    cascade = cascade_from_args(args)
    args.out.mkdir(parents=True, exist_ok=True)

    unsent: list[str] = []  # series whose DICOM results could not be written

    def said(src: Any, entry: Any, screened: Any) -> None:
        from tqdm import tqdm

        if screened is not None:  # tqdm.write: above the open progress bars, not into them
            if args.dicom_out is not None:
                from PETriageLib.reporting.dicom_results import write_dicom_results

                try:  # one series' DICOM results must not stop the worklist
                    write_dicom_results(screened.result, screened.heatmaps,
                                        args.dicom_out / Path(entry.report_dir).name)
                except Exception as exc:
                    unsent.append(entry.series_uid)
                    log.error("series %s: DICOM results not written: %s: %s", entry.series_uid,
                              type(exc).__name__, exc)
            score = entry.pe_score if entry.pe_score is not None else float("nan")
            tqdm.write(f"{entry.verdict:15s} pe_score {score:.3f}  {entry.num_slices:4d} slices  {entry.report_dir}")

    series_bar = TqdmProgress("series", disable=quiet or len(sources) == 1, unit="series")
    step_bar = TqdmProgress("triage", disable=quiet)
    try:
        ranked = screen_sources(sources, cascade, screen_options(args), out_root=args.out, progress=series_bar,
                                step_progress=step_bar, on_series=said)
    finally:
        step_bar.close()
        series_bar.close()
    write_worklist_csv(ranked, args.out / "worklist.csv")
    failed = sum(e.verdict == "error" for e in ranked)
    extra = f", DICOM results of {len(unsent)} not written" if unsent else ""
    print(f"worklist: {args.out / 'worklist.csv'} ({len(ranked)} series, {failed} failed{extra})")
    return 1 if failed or unsent else 0
