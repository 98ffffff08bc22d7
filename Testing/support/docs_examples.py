"""The code examples of the docs, as the tests that run them read them."""
from __future__ import annotations

import re
from pathlib import Path


def python_block(doc: Path, heading: str) -> str:
    """The first ```python block after ``heading``."""
    text = doc.read_text()
    start = text.index(heading)
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)
