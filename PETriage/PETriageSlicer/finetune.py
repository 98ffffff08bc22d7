"""Fine-tune a cascade stage from the current model in a background process (`petriage train`),
with progress read from its output, cancel, and registration of the new version."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

import PETriageLib

log = logging.getLogger(__name__)

_PERCENT = re.compile(r"(\d{1,3})%\|")  # tqdm: ' 40%|####      | 4/10'


def python_executable() -> str:
    """Slicer's own interpreter inside Slicer (PythonSlicer), else this one."""
    return shutil.which("PythonSlicer") or sys.executable


def painted_lesions(manifest: "str | Path") -> int:
    """How many series of an exported manifest come with a painted lesion mask."""
    from PETriageLib.training.manifest import load_manifest

    return sum(source.mask is not None for source in load_manifest(manifest))


class FineTuneJob:
    """One `petriage train --init-from` run in a child process."""

    def __init__(self, manifest: "str | Path", stage: int, init_from: "str | Path", out_dir: "str | Path",
                 epochs: int = 3, extra_args: Sequence[str] = (), lesion_loss: float = 0.0) -> None:
        """``lesion_loss`` > 0 also trains on the painted lesion masks (``petriage train --mask-loss``)."""
        self.stage = int(stage)
        if lesion_loss > 0:
            extra_args = ("--mask-loss", f"{lesion_loss:g}", *extra_args)
        self.init_from = str(init_from)
        self.out_dir = Path(out_dir)
        self.command = [python_executable(), "-c", "import sys; from PETriageLib.cli import main; sys.exit(main())",
                        "train", "--manifest", str(manifest), "--stage", str(self.stage), "--out", str(out_dir),
                        "--init-from", str(init_from), "--epochs", str(int(epochs)), *map(str, extra_args)]
        self.lines: list[str] = []
        self.progress: float | None = None
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self.cancelled = False

    def start(self) -> "FineTuneJob":
        env = dict(os.environ)
        package_root = str(Path(PETriageLib.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        log.info("fine-tuning stage %d: %s", self.stage, " ".join(self.command[3:]))
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         env=env, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        buf = ""
        while True:
            ch = self._process.stdout.read(1)
            if not ch:
                break
            if ch in "\r\n":  # tqdm redraws with '\r'
                if buf.strip():
                    self._line(buf)
                buf = ""
            else:
                buf += ch
        if buf.strip():
            self._line(buf)

    def _line(self, line: str) -> None:
        self.lines.append(line)
        m = _PERCENT.search(line)
        if m:
            self.progress = min(100, int(m.group(1))) / 100.0

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def cancel(self, timeout: float = 10.0) -> None:
        """Stop the child (terminate, then kill); its last resumable checkpoint stays in out_dir."""
        if self.running:
            self.cancelled = True
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def wait(self, timeout: float | None = None) -> int:
        assert self._process is not None, "start() the job first"
        code = self._process.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def result(self) -> dict[str, Any]:
        """The trainer's final JSON ({'best': path, 'threshold': ...}); raises if the run failed."""
        if self.returncode != 0:
            tail = "\n".join(self.lines[-15:])
            raise RuntimeError(f"fine-tuning stage {self.stage} failed (exit {self.returncode}):\n{tail}")
        text = "\n".join(self.lines)
        start = text.rfind("{\n")
        if start < 0:
            raise RuntimeError(f"fine-tuning stage {self.stage}: no result in the trainer's output")
        return json.loads(text[start:text.rfind("}") + 1])

    def register(self, name: str, card: dict[str, Any] | None = None) -> dict:
        """Add the best checkpoint to the module's model list as ``name``."""
        from PETriageSlicer.model_list import register_user_model

        best = self.result()["best"]
        card = dict(card or {})
        card.setdefault("intended_use", "research: fine-tuned in the PETriage Slicer module; not for clinical use")
        card.setdefault("training_data", f"user annotations, started from {self.init_from}")
        card.setdefault("limits", "validated only on the user's own split")
        card.setdefault("metrics", {"threshold": self.result().get("threshold")})
        return register_user_model(name, self.stage, best, card)
