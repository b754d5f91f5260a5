"""A process that moves rows between two databases in one two_phase() and may die midway.

    python -m tests.twophase_child LEFT_URL RIGHT_URL STEP

Moves every row of ``moves_src`` (on LEFT) to ``moves_dst`` (on RIGHT) in
one coordinated transaction and calls ``os._exit(3)`` when the protocol
reaches STEP ('none' runs to the end).
"""

from __future__ import annotations

import os
import sys

from rhosocial_ar import ActiveRecord, ConnectionManager, Field, two_phase, twophase

CRASH_EXIT = 3


class Source(ActiveRecord):
    __table_name__ = "moves_src"
    __connection__ = "left"
    id: int = Field(primary_key=True, autoincrement=False)
    payload: str


class Target(ActiveRecord):
    __table_name__ = "moves_dst"
    __connection__ = "right"
    id: int = Field(primary_key=True, autoincrement=False)
    payload: str


def configure(left: str, right: str) -> None:
    ConnectionManager.configure({"left": {"url": left}, "right": {"url": right}})


def move_all() -> int:
    with two_phase("left", "right"):
        rows = Source.all()
        Target.bulk_insert([{"id": r.id, "payload": r.payload} for r in rows])
        Source.where(id=[r.id for r in rows]).delete()
    return len(rows)


def main(argv: list[str]) -> int:
    left, right, step = argv
    configure(left, right)

    def maybe_die(reached: str) -> None:
        if reached == step:
            sys.stdout.flush()
            os._exit(CRASH_EXIT)

    twophase.crash_point = maybe_die
    print(f"moved {move_all()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
