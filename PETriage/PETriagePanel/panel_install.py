"""The panel's "Install dependencies": torch through the PyTorch extension, then the pip packages.

On Slicer 5.11+ slicer.packaging.pip_ensure (Base/Python/slicer/packaging.py) installs with its own
progress and restart prompt. On 5.10 pip runs in a child process (PETriageSlicer.child_process) that
the panel's timer polls, so Slicer stays responsive and the progress bar moves; a restart is offered
when an upgraded package was already imported.
"""
from __future__ import annotations

import os
import tempfile
from typing import Callable, Optional

import slicer

from PETriageSlicer import install
from PETriageSlicer.child_process import ChildProcess, python_executable


class DependencyInstaller:
    """One install run: ``start()`` returns False when nothing was left to do in the background."""

    def __init__(self, on_done: Callable[[Optional[str]], None]) -> None:
        self.on_done = on_done  # called with None on success, else the error text
        self.process: Optional[ChildProcess] = None
        self._queue: list[list[str]] = []
        self._missing: list[install.MissingPackage] = []

    def start(self) -> bool:
        install.ensure_torch(prompt=True)  # PyTorchUtils shows its own dialogs; may restart Slicer
        self._missing = install.missing_pip_packages()
        if not self._missing:
            return False
        if install.has_pip_ensure():  # 5.11+: Slicer's own installer, with progress and restart prompt
            install.ensure_pip_packages(prompt=True)
            return False
        text = "PETriage will install:\n" + "\n".join(m.describe() for m in self._missing)
        if not slicer.util.confirmOkCancelDisplay(text, "PETriage"):
            raise RuntimeError("PETriage dependencies were not installed.")
        self._queue = install.pip_arguments(self._missing)
        self._next()
        return True

    def _next(self) -> None:
        args = self._queue.pop(0)
        log = os.path.join(tempfile.mkdtemp(prefix="petriage-pip-"), "pip.log")
        self.process = ChildProcess([python_executable(), "-m", "pip", *args, "--progress-bar", "off"], log,
                                    "Installing " + " ".join(a for a in args[1:] if not a.startswith("-")))
        self.process.start()

    @property
    def running(self) -> bool:
        return self.process is not None and (self.process.running or bool(self._queue))

    def poll(self) -> bool:
        """Called by the panel's timer; True once everything has ended."""
        if self.process is None or not self.process.poll():
            return False
        if self.process.returncode != 0:
            self.on_done(f"pip failed (exit {self.process.returncode}):\n{self.process.tail()}")
            return True
        if self._queue:
            self._next()
            return False
        install.offer_restart(self._missing)
        self.on_done(None)
        return True

    def cancel(self) -> None:
        self._queue = []
        if self.process is not None:
            self.process.cancel()
