"""A process that moves rows with transfer() and may die in its N-th batch.

    python -m tests.transfer_child SOURCE_URL TARGET_URL STEP N

STEP is a two-phase step ('after_prepares', 'after_decision', ...) or a
transfer step ('between_sides', 'after_batch'); the process calls
``os._exit(3)`` the N-th time it reaches it ('none' runs to the end).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from rhosocial_ar import ActiveRecord, ConnectionManager, Field, transfer, twophase

# the package's ``transfer`` is the function; the module is reached by name
transfer_module = importlib.import_module("rhosocial_ar.transfer")

CRASH_EXIT = 3
ROWS, BATCH = 250, 50


class Outbox(ActiveRecord):
    __table_name__ = "transfer_src"
    __connection__ = "source"
    id: int = Field(primary_key=True, autoincrement=False)
    body: str


class Archive(ActiveRecord):
    __table_name__ = "transfer_dst"
    __connection__ = "target"
    id: int = Field(primary_key=True, autoincrement=False)
    body: str
    length: int


def configure(source: str, target: str) -> None:
    ConnectionManager.configure({"source": {"url": source}, "target": {"url": target}})


def move() -> Any:
    return transfer(Outbox.query(), Archive,
                    map={"id": "id", "body": "body", "length": lambda r: len(r.body)},
                    batch_size=BATCH, delete_source=True, progress=False)


def main(argv: list[str]) -> int:
    source, target, step, nth = argv
    configure(source, target)
    seen = {"count": 0}

    def maybe_die(reached: str) -> None:
        if reached == step:
            seen["count"] += 1
            if seen["count"] == int(nth):
                os._exit(CRASH_EXIT)

    twophase.crash_point = maybe_die
    transfer_module.crash_point = maybe_die
    print(move())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
