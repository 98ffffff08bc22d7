"""The series models at triage: a slice refiner that re-scores every slice with its neighbours in
view, and a patient classifier whose p(PE) decides the verdict. Both read per-slice features of
the two stages and load only when trained on exactly these two stage models. Their training
lives in ``training.series_models``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from PETriageLib.triage.stages import Stage

if TYPE_CHECKING:  # the series-model files import torch; triage loads them only when asked
    from PETriageLib.models.series_checkpoint import SeriesModel


@dataclass
class SeriesModels:
    """The refiner and the patient classifier a cascade runs, either or both absent."""

    refiner: SeriesModel | None = None
    patient: SeriesModel | None = None
    refiner_path: str | None = None
    patient_path: str | None = None

    @classmethod
    def load(cls, refiner: "str | Path | None", patient_model: "str | Path | None", stage1: Stage,
             stage2: Stage) -> "SeriesModels":
        """Load the given files (or registered names), bound to these two stages' weights."""
        if refiner is None and patient_model is None:
            return cls()
        from PETriageLib.models.series_checkpoint import load_patient_classifier, load_slice_refiner

        shas = [stage1.identities(), stage2.identities()]
        loaded = cls(None if refiner is None else load_slice_refiner(refiner, shas),
                     None if patient_model is None else load_patient_classifier(patient_model, shas),
                     None if refiner is None else str(refiner), None if patient_model is None else str(patient_model))
        kinds = {m.features for m in (loaded.refiner, loaded.patient) if m is not None}
        if len(kinds) > 1:
            raise ValueError(f"the slice refiner and the patient classifier read different features {sorted(kinds)}; "
                             "train them on the same --features")
        return loaded

    @property
    def features(self) -> str | None:
        """The slice feature kind both read; None without series models."""
        present = [m for m in (self.refiner, self.patient) if m is not None]
        return present[0].features if present else None

    def refine(self, features: np.ndarray) -> np.ndarray:
        """(slices, 2) refined [p(disease), p(PE)] of one series' (slices, F) features."""
        from PETriageLib.models.series_nets import refine_slices

        return refine_slices(self.refiner.model, [features])[0]

    def patient_probability(self, features: np.ndarray) -> float:
        """The patient classifier's p(PE) of one series' (slices, F) features."""
        from PETriageLib.models.series_nets import predict_patients

        return float(predict_patients(self.patient.model, [features])[0])


def stack_features(indices: Sequence[int], features: "dict[int, np.ndarray]") -> np.ndarray:
    """The features of ``indices`` in order, as one (slices, F) series."""
    return np.stack([features[k] for k in indices])
