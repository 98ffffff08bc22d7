"""Fixtures of the PACS tests: a real Orthanc, `petriage listen` as a subprocess (SIGKILL-able),
and a study that mixes what a scanner sends: a chest CT, an MR, a localizer and a corrupt file."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from support.orthanc import Orthanc, free_port, start_orthanc

REPO = Path(__file__).resolve().parents[2]
LISTENER_AET = "PETRIAGE"


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


@dataclass
class ListenerProcess:
    spool: Path
    port: int
    process: subprocess.Popen | None
    log_path: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        db = sqlite3.connect(self.spool / "queue.sqlite", timeout=30)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def wait_for(self, sql: str, args: tuple = (), timeout_s: float = 120, poll_s: float = 0.2) -> list[tuple]:
        """Poll the listener's queue until ``sql`` returns rows (its crash-safe state is the truth)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the listener exited ({self.process.returncode}):\n{self.log()}")
            if (self.spool / "queue.sqlite").exists():
                rows = self.query(sql, args)
                if rows:
                    return rows
            time.sleep(poll_s)
        pytest.fail(f"timed out waiting for {sql} {args}:\n{self.log()}")


@pytest.fixture(scope="module")
def start_listener(tiny_checkpoints, orthanc):
    """start(spool) -> a running `petriage listen` that Orthanc knows as modality 'petriage'."""
    started: list[ListenerProcess] = []

    def start(spool: Path, port: int | None = None, settle_s: float = 1.5,
              destination: str | None = None) -> ListenerProcess:
        port = port or free_port()
        spool.mkdir(parents=True, exist_ok=True)
        log_path = spool.parent / f"{spool.name}-listener-{len(started)}.log"
        cmd = [sys.executable, "-c", "import sys; from PETriageLib.cli import main; sys.exit(main())",
               "listen", "--spool", str(spool), "--port", str(port), "--ae-title", LISTENER_AET,
               "--allow-ae", "ORTHANC", "--destination", destination or orthanc.destination, "--settle", str(settle_s),
               "--retry-base", "0.5", "--models", *map(str, tiny_checkpoints), "--device", "cpu",
               "--top-k", "2", "--domain-check", "off"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen(cmd, stdout=log_path.open("ab"), stderr=subprocess.STDOUT, env=env, cwd=REPO)
        listener = ListenerProcess(spool, port, proc, log_path)
        started.append(listener)
        orthanc.add_modality("petriage", LISTENER_AET, port)
        deadline = time.monotonic() + 60
        while not orthanc.echo("petriage"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the listener did not answer C-ECHO:\n{listener.log()}")
            time.sleep(0.3)
        return listener

    yield start
    for listener in started:
        listener.stop()


def _copy(ds: pydicom.Dataset, path: Path, **changes) -> Path:
    for key, value in changes.items():
        setattr(ds, key, value)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


@dataclass
class MixedStudy:
    study_uid: str
    ct: list[Path]
    mr: Path
    localizer: Path
    corrupt: Path

    @property
    def files(self) -> list[Path]:
        return [*self.ct, self.mr, self.localizer, self.corrupt]


def mixed_study(seed: int, out: Path) -> MixedStudy:
    """A phantom chest CT (16 slices, 128 px) plus, in the same study: an MR image, a one-slice coronal
    localizer, and a CT instance of the chest series whose pixel data is cut in half."""
    from pydicom.data import get_testdata_file

    from PETriageLib.phantom import generate_study, write_study

    ct = sorted(write_study(generate_study(seed, matrix=128, slices=16, pe=True), out / "ct")["series_dir"]
                .glob("*.dcm"))
    first = pydicom.dcmread(ct[0])
    same = {"StudyInstanceUID": first.StudyInstanceUID, "PatientID": first.PatientID,
            "PatientName": first.PatientName}
    mr = _copy(pydicom.dcmread(get_testdata_file("MR_small.dcm")), out / "mr.dcm", **same,
               SeriesInstanceUID=generate_uid(), SOPInstanceUID=generate_uid())
    localizer = _copy(pydicom.dcmread(ct[0]), out / "localizer.dcm", SeriesInstanceUID=generate_uid(),
                      SOPInstanceUID=generate_uid(), SeriesNumber=2, SeriesDescription="Topogram",
                      ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
                      ImageOrientationPatient=["1", "0", "0", "0", "0", "-1"])
    broken = pydicom.dcmread(ct[5])
    corrupt = _copy(broken, out / "corrupt.dcm", SOPInstanceUID=generate_uid(), InstanceNumber=99,
                    PixelData=broken.PixelData[: len(broken.PixelData) // 2])
    return MixedStudy(str(first.StudyInstanceUID), ct, mr, localizer, corrupt)
