"""The words PETriage's results are made of, in one place: every step, front end and file format
spells them from here. Plain constants, no imports, so even the Slicer module file can read them
before its dependencies are installed."""

SLICE_LABELS = ("wnl", "other", "pe")  # within normal limits, other lung disease, pulmonary embolism
STAGE_CLASSES = {1: ("wnl", "disease"), 2: ("other", "pe")}  # each stage's negative and positive class
PHASE_CHOICES = ("auto", "ctpa", "nct")  # petriage triage --phase: measured, or forced
# How triage turns slices into a patient flag: the pair's registered patient rule (chosen for patient
# sensitivity, models.patient_rules) where it has one, or each checkpoint's slice operating point.
OPERATING_POINTS = ("patient", "slice")
# the lesion classes a segmentation channel can hold, as a lesion mask codes them
# (training/lesion_masks.py: 1 = PE, any other non-zero code = other lung disease), and their names;
# file names, DICOM SEG and Slicer segment labels and table rows are spelt from the names
LESION_CLASSES = ("pe", "other")
LESION_TITLES = {"pe": "embolus", "other": "other disease"}
VERDICTS = ("pe_suspected", "other_disease", "no_finding", "not_analysable")
CAM_MODES = ("top-k", "pe", "none")  # which slices get Grad-CAM
DOMAIN_CHECK_MODES = ("refuse", "warn", "off")  # a series unlike the training data: refused, warned, not checked
# fast: BN folded, channels_last, bf16 where the hardware has it, checked against fp32; eager: the
# model as loaded, fp32 (naive is its old name)
INFERENCE_PATHS = ("eager", "naive", "fast")
# which engine runs the fast path: auto (chosen by the hardware), torch, or onnx (ONNX Runtime, CPU)
ENGINE_CHOICES = ("auto", "torch", "onnx")
ENGINE_ALIASES = {"onnxruntime": "onnx"}  # older spelling, still accepted


def is_probability(value: object) -> bool:
    """What an operating point must be: a real number (not a bool, not text), finite, in [0, 1].
    Here because both the triage options and the checkpoint reader check it, and this module loads no torch."""
    import math  # standard library, imported here: the module itself stays import-free
    import numbers

    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(float(value)) and 0.0 <= float(value) <= 1.0)
