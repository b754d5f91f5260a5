"""Read the user's seed documents: their python code blocks, imports renamed.

The documents are copies in ``tests/seed_docs/`` (their origin in its
README), so the tests need nothing beside the clone.
"""

from __future__ import annotations

import re
from pathlib import Path

SEEDS = Path(__file__).resolve().parent / "seed_docs"


def python_blocks(name: str) -> list[str]:
    """The ```python blocks of a seed document, with rhosocial_ar as the import."""
    text = (SEEDS / name).read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    return [b.replace("rhosocial.activerecord", "rhosocial_ar") for b in blocks]
