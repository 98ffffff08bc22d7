"""The screening loop every front end runs: one series -> triage -> Grad-CAM slices -> heatmaps
(-> report), and many series -> one ranked worklist. The CLI, the Slicer module and the
benchmarks call it; none of them re-orchestrates the steps."""
