"""Synthetic chest CT studies (phantoms) with exact ground truth, written as DICOM series.

generate_study(seed, ...) -> Study; write_study(study, out_dir); generate_dataset(out_dir, patients, seed, ...).
"""
from .dataset import generate_dataset
from .findings import FINDING_CODES, Finding
from .study import Study, generate_study
from .writer import write_study

__all__ = ["FINDING_CODES", "Finding", "Study", "generate_dataset", "generate_study", "write_study"]
