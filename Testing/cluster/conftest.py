"""An archive of phantom studies and refused series, a local Ray cluster of 2 CPUs, and the
cascade spec of the tiny test checkpoints, shared by the cluster tests."""
from __future__ import annotations

from pathlib import Path

import pytest
from support.dicom_factory import chest_hu, write_series

from PETriageLib.cluster.worker import CascadeSpec
from PETriageLib.screening.one_series import ScreenOptions

PHANTOMS = 8
REFUSED = 2  # an MR series (modality) and a 4-slice CT (the eligibility gate)
# Grad-CAM on 2 slices and no key images keep every series to about a second
OPTIONS = ScreenOptions(top_k=2, key_images=False)


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Path:
    from PETriageLib.phantom import generate_study, write_study

    root = tmp_path_factory.mktemp("archive")
    for seed in range(PHANTOMS):
        write_study(generate_study(seed, matrix=128, slices=12, pe=seed % 2 == 0), root / f"study{seed}")
    write_series(root / "mr", chest_hu(12), modality="MR")
    write_series(root / "short", chest_hu(4))
    return root


@pytest.fixture(scope="session")
def spec(tiny_checkpoints) -> CascadeSpec:
    return CascadeSpec(str(tiny_checkpoints[0]), str(tiny_checkpoints[1]), device="cpu",
                       options={"batch_size": 8, "all_slices": True})


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
