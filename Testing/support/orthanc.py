"""A real Orthanc (Debian's `orthanc` package) for the tests: its own temporary configuration and
storage, free localhost ports, stopped after. Talked to over its REST API with urllib."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ORTHANC_AET = "ORTHANC"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Orthanc:
    http_port: int
    dicom_port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def destination(self) -> str:
        return f"{ORTHANC_AET}@127.0.0.1:{self.dicom_port}"

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                timeout: float = 120) -> Any:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            payload = r.read()
        ctype = r.headers.get("Content-Type", "")
        return json.loads(payload) if "json" in ctype else payload

    def upload(self, files: list[Path]) -> list[str]:
        """POST each file; the Orthanc instance ids."""
        return [self.request("POST", "/instances", raw=Path(f).read_bytes())["ID"] for f in files]

    def add_modality(self, name: str, ae_title: str, port: int) -> None:
        self.request("PUT", f"/modalities/{name}", {"AET": ae_title, "Host": "127.0.0.1", "Port": port})

    def store_to(self, modality: str, resources: list[str], timeout: float = 120, wait: bool = True) -> Any:
        """C-STORE the resources (study, series or instance ids) to a modality: waiting for the end,
        or (``wait=False``) as an Orthanc job; the job's id then."""
        return self.request("POST", f"/modalities/{modality}/store",
                            {"Resources": resources, "Synchronous": wait, "Asynchronous": not wait}, timeout=timeout)

    def echo(self, modality: str) -> bool:
        try:
            self.request("POST", f"/modalities/{modality}/echo", {}, timeout=10)
            return True
        except urllib.error.HTTPError:
            return False

    def series_of_study(self, study_uid: str) -> list[dict]:
        ids = self.request("POST", "/tools/lookup", raw=study_uid.encode())
        study = next((i["ID"] for i in ids if i["Type"] == "Study"), None)
        return [] if study is None else self.request("GET", f"/studies/{study}/series")

    def instance_file(self, instance_id: str) -> bytes:
        return self.request("GET", f"/instances/{instance_id}/file")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_orthanc(work: Path, timeout_s: float = 60, dicom_port: int | None = None, jobs: int = 2) -> Orthanc:
    """``jobs``: Orthanc jobs run at once (each C-STORE job is one association)."""
    exe = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not Path(exe).exists():
        raise RuntimeError("Orthanc not installed: scripts/setup.sh installs Debian's orthanc")
    http_port, dicom_port = free_port(), dicom_port or free_port()
    config = {"Name": "petriage-test", "StorageDirectory": str(work / "storage"), "IndexDirectory": str(work / "index"),
              "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": ORTHANC_AET, "HttpServerEnabled": True,
              "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomAlwaysAllowStore": True,
              "DicomCheckModalityHost": False, "Plugins": [], "ConcurrentJobs": jobs, "StableAge": 1,
              "DicomScuTimeout": 30, "DicomModalities": {}, "DicomModalitiesInDatabase": True,
              "HttpTimeout": 120, "SaveJobs": False,
              "JobsHistorySize": 1000}  # the load test asks for the state of every job it started
    work.mkdir(parents=True, exist_ok=True)
    (work / "orthanc.json").write_text(json.dumps(config, indent=1))
    log_path = work / "orthanc.log"
    proc = subprocess.Popen([exe, str(work / "orthanc.json")], stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    server = Orthanc(http_port, dicom_port, proc, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited ({proc.returncode}): {log_path.read_text()[-2000:]}")
        try:
            server.request("GET", "/system", timeout=2)
            return server
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"Orthanc did not answer on {server.url} within {timeout_s:.0f} s")
