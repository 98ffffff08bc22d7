"""Fine-tune a cascade stage from the current model in a background process (`petriage train`),
with progress read from its output, cancel, and registration of the new version."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

from PETriageSlicer.child_process import ChildProcess, python_executable

log = logging.getLogger(__name__)


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
        self.process = ChildProcess(self.command, self.out_dir / "finetune.log", f"fine-tuning stage {self.stage}")

    def start(self) -> "FineTuneJob":
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.process.start()
        return self

    @property
    def lines(self) -> list[str]:
        self.process.poll()
        return self.process.lines

    @property
    def progress(self) -> Optional[float]:
        """0..1 from the trainer's tqdm bar; None before the first bar (read on the caller's thread)."""
        self.process.poll()
        step = self.process.progress
        return step.done / 100.0 if step.total == 100 else None

    @property
    def running(self) -> bool:
        return self.process.running

    @property
    def returncode(self) -> Optional[int]:
        return self.process.returncode

    @property
    def cancelled(self) -> bool:
        return self.process.cancelled

    def cancel(self, timeout: float = 10.0) -> None:
        """Stop the child (terminate, then kill); its last resumable checkpoint stays in out_dir."""
        self.process.cancel(timeout)

    def wait(self, timeout: Optional[float] = None) -> int:
        return self.process.wait(timeout)

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
