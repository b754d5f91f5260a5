"""The crash-matrix child on async connections: one ``async with two_phase()``, maybe killed.

    python -m tests.async_twophase_child LEFT_URL RIGHT_URL STEP

The same move as ``tests.twophase_child`` (whose models and exit code it
uses), awaited on async drivers; ``os._exit(3)`` when the protocol reaches
STEP ('none' runs to the end).
"""

from __future__ import annotations

import asyncio
import os
import sys

from rhosocial_ar import ConnectionManager, two_phase, twophase
from tests.twophase_child import CRASH_EXIT, Source, Target, configure


async def amove_all() -> int:
    async with two_phase("left", "right"):
        rows = await Source.aall()
        await Target.abulk_insert([{"id": r.id, "payload": r.payload} for r in rows])
        await Source.where(id=[r.id for r in rows]).adelete()
    return len(rows)


def main(argv: list[str]) -> int:
    left, right, step = argv

    def maybe_die(reached: str) -> None:
        if reached == step:
            sys.stdout.flush()
            os._exit(CRASH_EXIT)

    twophase.crash_point = maybe_die

    async def run() -> int:
        configure(left, right)
        try:
            return await amove_all()
        finally:
            await ConnectionManager.areset()

    print(f"moved {asyncio.run(run())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
