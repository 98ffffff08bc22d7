"""Benchmarks of PETriage: speed, memory and scaling of triage on generated series.

``run_bench(quick=..., device=..., out_dir=...)`` (run_all.py) runs every measurement and
returns one JSON-able dict; ``results.py`` writes it as JSON and a Markdown table. Each
measurement lives in its own small module: throughput (stage-1 slices/s, naive vs fast),
endtoend (one triage split into its steps), memory (peak RSS in a subprocess), scaling
(time vs slices), comparators (the paper's baselines).
"""
