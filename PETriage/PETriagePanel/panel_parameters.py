"""The module's typed parameter node (slicer.parameterNodeWrapper): what the panel's widgets edit."""

from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

from PETriageLib.vocabulary import CAM_MODES, DOMAIN_CHECK_MODES, OPERATING_POINTS, PHASE_CHOICES, SLICE_LABELS

NO_MODEL = "(none)"  # the optional series-model combos' entry for "not used"
# model combos (filled at run time, so bound by hand in both directions): widget name -> parameter
MODEL_COMBOS = {"stage1ModelComboBox": "stage1Model", "stage2ModelComboBox": "stage2Model",
                "refinerModelComboBox": "refinerModel", "patientModelComboBox": "patientModel",
                "segModelComboBox": "segModel", "nctModelComboBox": "nctModel"}
OPTIONAL_MODELS = ("refinerModel", "patientModel", "segModel", "nctModel")  # may be NO_MODEL


@parameterNodeWrapper
class PETriageParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    stage1Model: str = ""
    stage2Model: str = ""
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    useModelThreshold: bool = True
    threshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    patientModel: str = ""  # a patient classifier file; empty: a patient is flagged when a slice is
    refinerModel: str = ""  # a slice refiner file; empty: the stages' own slice probabilities
    operatingPoint: Annotated[str, Choice(list(OPERATING_POINTS))] = "patient"  # the pair's patient rule, or slice points
    domainCheck: Annotated[str, Choice(list(DOMAIN_CHECK_MODES))] = "refuse"  # series unlike the training data
    phase: Annotated[str, Choice(list(PHASE_CHOICES))] = "auto"  # CTPA cascade or non-contrast model
    segModel: str = ""  # an embolus segmentation model for CTPA series; empty: none
    nctModel: str = ""  # the non-contrast (CPMN) model for non-contrast series; empty: none
    camMode: Annotated[str, Choice(list(CAM_MODES))] = "top-k"
    topK: Annotated[int, WithinRange(1, 100)] = 5
    opacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    heatmapThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.2
    foregroundBranch: str = ""  # a branch of the models that ran (the shipped ones: pe, lung); empty: the first
    annotationLabel: Annotated[str, Choice(list(SLICE_LABELS))] = "pe"
    # a bound plain int would get the connector's default range: keep the slice indices' own range
    labelFrom: Annotated[int, WithinRange(0, 9999)] = 0
    labelTo: Annotated[int, WithinRange(0, 9999)] = 0
    epochs: Annotated[int, WithinRange(1, 100)] = 3
    learnFromLesions: bool = True
    newModelName: str = ""
    exportFolder: str = ""  # set to <Slicer's default scene folder>/PETriage on first use; never "."


def settings_from(p: PETriageParameterNode):
    """TriageSettings of the current parameter node."""
    from PETriageSlicer.settings import DisplayOptions, TriageSettings

    return TriageSettings(
        stage1=p.stage1Model, stage2=p.stage2Model, device=p.device,
        threshold_pe=None if p.useModelThreshold else p.threshold, patient_model=p.patientModel or None,
        refiner=p.refinerModel or None, operating_point=p.operatingPoint, domain_check=p.domainCheck, phase=p.phase,
        seg_model=p.segModel or None, nct_model=p.nctModel or None, cam=p.camMode, top_k=p.topK,
        display=DisplayOptions(threshold=p.heatmapThreshold, opacity=p.opacity, foreground_branch=p.foregroundBranch or None),
    )
