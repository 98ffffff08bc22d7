"""PETriageLib: everything in PETriage that needs no 3D Slicer.

Data flow, one module per step:
DICOM files -> ``dicom_series`` (CTVolume) -> ``lung_crop`` + ``windows`` -> ``preprocess``
-> ``models`` -> ``cascade`` -> ``verdict`` -> ``gradcam`` -> ``report``.
"""

__version__ = "0.1.0"
