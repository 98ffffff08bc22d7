"""One child process the GUI polls: its output goes to a log file that ``poll()`` reads on the caller's
(GUI) thread, so no Python thread is needed in Slicer (PythonQt runs Python without thread support:
a worker thread only runs while the GUI thread happens to run Python), and no pipe can fill up.

Progress lines are ``PETRIAGE-PROGRESS <done> <total> <message>`` (written by triage_child.py) or a
tqdm bar (`` 40%|####``, by `petriage train` and pip). Cancel terminates, then kills the child.
This is what Slicer's own runners do with QProcess (TotalSegmentator, MONAIAuto3DSeg, SlicerNNUnet
run inference in a child process); plain subprocess keeps it testable without Qt.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import PETriageLib

log = logging.getLogger(__name__)

PROGRESS_PREFIX = "PETRIAGE-PROGRESS "
_PERCENT = re.compile(r"(\d{1,3})%\|")  # tqdm: ' 40%|####      | 4/10'


def python_executable() -> str:
    """Slicer's own interpreter inside Slicer, else this one. Slicer puts PythonSlicer on PATH, and
    slicer.util.executePythonModule (Base/Python/slicer/util.py) finds it the same way."""
    return shutil.which("PythonSlicer") or sys.executable


def child_environment() -> dict[str, str]:
    """This environment with PETriageLib and PETriageSlicer importable in the child."""
    env = dict(os.environ)
    roots = [str(Path(PETriageLib.__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1])]
    env["PYTHONPATH"] = os.pathsep.join(roots + [p for p in [env.get("PYTHONPATH", "")] if p])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


@dataclass
class ProgressLine:
    done: int
    total: int
    message: str


def parse_progress(line: str) -> Optional[ProgressLine]:
    """A progress line of the child, or None for any other output."""
    if line.startswith(PROGRESS_PREFIX):
        parts = line[len(PROGRESS_PREFIX):].split(" ", 2)
        try:
            return ProgressLine(int(parts[0]), int(parts[1]), parts[2] if len(parts) > 2 else "")
        except (ValueError, IndexError):
            return None
    m = _PERCENT.search(line)
    if m:
        return ProgressLine(min(100, int(m.group(1))), 100, line.strip())
    return None


class ChildProcess:
    """``command`` in a child process; ``poll()`` (GUI thread) reads its new output and says if it ended."""

    def __init__(self, command: Sequence[str], log_path: "str | Path", label: str) -> None:
        self.command = [str(c) for c in command]
        self.log_path = Path(log_path)
        self.label = label
        self.lines: list[str] = []
        self.progress = ProgressLine(0, 0, label)
        self.cancelled = False
        self._process: Optional[subprocess.Popen] = None
        self._offset = 0
        self._partial = ""

    def start(self) -> "ChildProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("%s: %s", self.label, " ".join(self.command))
        with open(self.log_path, "wb") as out:  # the child keeps its own handle
            self._process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=child_environment())
        return self

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return None if self._process is None else self._process.poll()

    def poll(self) -> bool:
        """Read the output written since the last call (progress, lines); True once the child has ended."""
        ended = self._process is not None and self._process.poll() is not None  # before reading: no lost tail
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        self._offset += len(data)
        text = self._partial + data.decode("utf-8", errors="replace")  # a bad byte never stops the reading
        *complete, self._partial = re.split(r"[\r\n]", text)
        if ended and self._partial:
            complete.append(self._partial)
            self._partial = ""
        for line in complete:
            if not line.strip():
                continue
            step = parse_progress(line)
            if step is not None:
                self.progress = step
            if not line.startswith(PROGRESS_PREFIX):
                self.lines.append(line)
        return ended

    def wait(self, timeout: Optional[float] = None) -> int:
        """Block until the end (scripts and tests), reading all output."""
        assert self._process is not None, "start() the process first"
        code = self._process.wait(timeout)
        self.poll()
        return code

    def cancel(self, timeout: float = 10.0) -> None:
        """Terminate the child, then kill it if it does not stop within ``timeout`` seconds."""
        if not self.running:
            return
        self.cancelled = True
        self._process.terminate()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self.poll()

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.lines[-n:])
