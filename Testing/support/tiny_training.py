"""Shared by the training tests: tiny model settings and a small phantom data set."""
from __future__ import annotations

from pathlib import Path

# A CBAMDRN-D-22 at width 1/8 on 64 px inputs: a few seconds per epoch of a few steps.
TINY = dict(architecture="cbamdrn_d22", model_config={"width": 0.125}, input_size=64, batch_size=8,
            threads=1, progress=False, save_every=2)


def make_tiny_dataset(out: Path, patients: int = 8, seed: int = 11) -> Path:
    """Phantoms at 96 px, 16 slices, half with PE; returns the manifest path."""
    from PETriageLib.phantom.dataset import generate_dataset

    return generate_dataset(out, patients=patients, seed=seed, matrix=96, slices=16, pe_fraction=0.5)
