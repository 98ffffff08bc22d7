"""PETriage scene logic for 3D Slicer, free of Qt: runs inside Slicer (Python console, module
widget) and on PyPI's slicer-core in plain Python.

    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings
    logic = PETriageSceneLogic()
    ct = logic.load_dicom("/path/to/series")
    nodes = logic.run(ct, TriageSettings("cbamdrn_d22_demo_stage1", "cbamdrn_d22_demo_stage2"))

Modules: scene (headless scene set-up), loading (DICOM -> node + subject hierarchy), geometry
(node <-> CTVolume), results (table, chart, heatmaps, views), navigation (slice jumps),
worklist (screening), annotation (labels, lesions, export), model_list and finetune (retraining).
"""
