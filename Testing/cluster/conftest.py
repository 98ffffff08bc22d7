"""An archive of phantom studies and refused series, a local Ray cluster of 2 CPUs, and the
cascade spec of the tiny test checkpoints, shared by the cluster tests."""
from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from support.dicom_factory import chest_hu, write_series
from support.screening_cases import PHANTOMS

from PETriageLib.cluster.screener import CascadeSpec
from PETriageLib.screening.one_series import ScreenOptions


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
    # eager fp32: the fast path's check against fp32 at every cascade build would only add time here
    return CascadeSpec(str(tiny_checkpoints[0]), str(tiny_checkpoints[1]), device="cpu",
                       options={"batch_size": 8, "all_slices": True, "inference": "eager"})


@pytest.fixture(scope="session")
def reference(archive, spec) -> dict:
    """The in-process loop every front end calls, over the archive folder: entries by series UID
    (without Grad-CAM, which changes no verdict and would only add time)."""
    from PETriageLib.screening.many_series import folder_sources, screen_sources

    return {e.series_uid: e for e in screen_sources(folder_sources(archive), spec.build(), ScreenOptions(cam="none"))}


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def orthanc_dicomweb(tmp_path_factory) -> Iterator[str]:
    """A real Orthanc with its DICOMweb plugin (Debian orthanc + orthanc-dicomweb, installed by
    scripts/setup.sh) on free localhost ports, with an empty temporary storage; its DICOMweb root."""
    if not (ORTHANC.exists() and DICOMWEB_PLUGIN.exists()):
        pytest.skip("Orthanc with the DICOMweb plugin is not installed (scripts/setup.sh installs it as root)")
    d = tmp_path_factory.mktemp("orthanc")
    http = free_port()
    config = {"Name": "PETriageTest", "StorageDirectory": str(d / "db"), "IndexDirectory": str(d / "db"),
              "HttpPort": http, "DicomPort": free_port(), "RemoteAccessAllowed": False,
              "AuthenticationEnabled": False, "Plugins": [str(DICOMWEB_PLUGIN)],
              "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": "127.0.0.1"}}
    (d / "orthanc.json").write_text(json.dumps(config))
    log = open(d / "orthanc.log", "w")
    proc = subprocess.Popen([str(ORTHANC), str(d / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http}/dicom-web"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/studies", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"Orthanc did not start: {(d / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    log.close()
