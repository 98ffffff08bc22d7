"""One way to write a file so that no reader (a parallel run, a crash, a kill) ever sees half of
it: write beside it under a temporary name, then rename it into place."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def atomic_write(path: "str | os.PathLike", write: Callable[[Path], object], suffix: str = "") -> Path:
    """``write(tmp)`` writes the whole file at ``tmp``; it then replaces ``path`` in one rename.

    ``suffix`` ends the temporary name, for writers that add their own (``np.save`` adds .npy).
    The temporary name carries the process id, so parallel writers never share one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}{suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
