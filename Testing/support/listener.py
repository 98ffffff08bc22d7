"""`petriage listen` as a subprocess (so that a test can SIGKILL it), and its queue read from outside
the way `petriage queue` reads it. Used by Testing/pacs and benchmarks/pacs_load.py."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[2]
LISTENER_AET = "PETRIAGE"


class ListenerError(RuntimeError):
    pass


@dataclass
class ListenerProcess:
    spool: Path
    port: int
    process: subprocess.Popen
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

    def peak_rss_mb(self) -> float:
        """The listener's peak resident memory so far (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise ListenerError("no VmHWM in /proc status")

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
                raise ListenerError(f"the listener exited ({self.process.returncode}):\n{self.log()}")
            if (self.spool / "queue.sqlite").exists():
                rows = self.query(sql, args)
                if rows:
                    return rows
            time.sleep(poll_s)
        raise ListenerError(f"timed out waiting for {sql} {args}:\n{self.log()}")


def start_listener(spool: Path, port: int, destination: str, models: Sequence[Path], extra: Sequence[str] = (),
                   log_path: Path | None = None) -> ListenerProcess:
    """Start `petriage listen` (calling AE ORTHANC allowed, tiny-model friendly options) on ``port``."""
    spool.mkdir(parents=True, exist_ok=True)
    log_path = log_path or spool.parent / f"{spool.name}-listener.log"
    cmd = [sys.executable, "-c", "import sys; from PETriageLib.cli import main; sys.exit(main())",
           "listen", "--spool", str(spool), "--port", str(port), "--ae-title", LISTENER_AET, "--allow-ae", "ORTHANC",
           "--destination", destination, "--models", *map(str, models), "--device", "cpu", *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, stdout=log_path.open("ab"), stderr=subprocess.STDOUT, env=env, cwd=REPO)
    return ListenerProcess(spool, port, proc, log_path)


def wait_for_echo(orthanc, listener: ListenerProcess, modality: str = "petriage", timeout_s: float = 60) -> None:
    """Register the listener in Orthanc and wait until Orthanc's C-ECHO to it succeeds."""
    orthanc.add_modality(modality, LISTENER_AET, listener.port)
    deadline = time.monotonic() + timeout_s
    while not orthanc.echo(modality):
        if listener.process.poll() is not None or time.monotonic() > deadline:
            raise ListenerError(f"the listener did not answer C-ECHO:\n{listener.log()}")
        time.sleep(0.3)
