"""The transfer crash child on async connections: ``await atransfer()``, maybe killed in batch N.

    python -m tests.async_transfer_child SOURCE_URL TARGET_URL STEP N

The same transfer as ``tests.transfer_child`` (its models, map and batch
size), awaited; ``os._exit(3)`` the N-th time STEP is reached.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from typing import Any

from rhosocial_ar import ConnectionManager, atransfer, twophase
from tests.transfer_child import BATCH, CRASH_EXIT, Archive, Outbox, configure

transfer_module = importlib.import_module("rhosocial_ar.transfer")


async def amove() -> Any:
    return await atransfer(Outbox.query(), Archive,
                           map={"id": "id", "body": "body", "length": lambda r: len(r.body)},
                           batch_size=BATCH, delete_source=True, progress=False)


def main(argv: list[str]) -> int:
    source, target, step, nth = argv
    seen = {"count": 0}

    def maybe_die(reached: str) -> None:
        if reached == step:
            seen["count"] += 1
            if seen["count"] == int(nth):
                os._exit(CRASH_EXIT)

    twophase.crash_point = maybe_die
    transfer_module.crash_point = maybe_die

    async def run() -> Any:
        configure(source, target)
        try:
            return await amove()
        finally:
            await ConnectionManager.areset()

    print(asyncio.run(run()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
