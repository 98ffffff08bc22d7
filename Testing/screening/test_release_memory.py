"""release_freed_memory gives memory that was freed inside glibc's heap back to the system: what
the screening step calls between the cascade and Grad-CAM to keep a long series' peak down."""
from __future__ import annotations

import platform
import sys

import numpy as np
import pytest

from PETriageLib.bench.memory import status_mb
from PETriageLib.heap import release_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_freed_heap_memory_goes_back_to_the_system():
    # 3000 arrays of 64 KB (below glibc's mmap threshold: they live in the heap), every one written;
    # freeing all but the last leaves ~190 MB free inside the heap, which free() alone cannot return
    blocks = [np.ones(8192) for _ in range(3000)]
    last = blocks[-1]
    del blocks
    before = status_mb("VmRSS")
    assert release_freed_memory() is True
    after = status_mb("VmRSS")
    assert before - after > 100, (before, after)
    assert last.sum() == 8192  # the block still in use is untouched
