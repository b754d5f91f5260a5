"""Waits in the sync core run in the bridge: the event loop goes on (aio.sleep, bridge.sleep).

``transfer()``'s wait between retries and the coordinator's between second
commits sleep through ``aio.sleep``: ``time.sleep`` in sync code, an awaited
``asyncio.sleep`` inside ``await atransfer(...)``, where a blocking sleep would
stop every other task of the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rhosocial_ar import ConnectionManager, Transaction, atransfer
from rhosocial_ar.aio import run, sleep
from tests.test_async_twophase import aurl, fresh_tables
from tests.transfer_child import Archive, Outbox


class Ticker:
    """A task that notes the time every 2 ms while the loop lets it run."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self.task = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            self.ticks.append(time.monotonic())
            await asyncio.sleep(0.002)

    def between(self, start: float, end: float) -> int:
        return sum(start < t < end for t in self.ticks)

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def test_sleep_awaits_in_the_bridge_and_blocks_in_sync_code() -> None:
    async def main() -> None:
        ticker = Ticker()
        await asyncio.sleep(0.01)
        start = time.monotonic()
        await run(sleep, 0.1)
        assert ticker.between(start, time.monotonic()) >= 10      # the loop ran meanwhile
        await ticker.stop()

    asyncio.run(main())
    start = time.monotonic()
    sleep(0.02)                                                    # plain sync code: time.sleep
    assert time.monotonic() - start >= 0.02


class RetryNoted(logging.Handler):
    """When transfer() logs that it retries a batch (just before its wait), and an event for it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.times: list[float] = []
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            self.times.append(time.monotonic())
            self.event.set()        # the loop's own thread: transfer() runs in the bridge


def test_atransfer_retry_wait_lets_other_tasks_run(tmp_path: Path) -> None:
    """A batch blocked by another session's lock times out, is retried after a wait; meanwhile a
    ticker task ticks and the session holding the lock (a task of the same loop) lets it go."""
    source, target = aurl("postgresql", 0, tmp_path), aurl("postgresql", 1, tmp_path)
    noted = RetryNoted()
    logger = logging.getLogger("rhosocial_ar")
    level = logger.level

    async def main() -> None:
        ConnectionManager.reset()
        ConnectionManager.configure({
            "source": {"url": source},
            "target": {"url": target, "connect_args": {"server_settings": {"lock_timeout": "300"}}},
            "holder": {"url": target},
        })
        try:
            await fresh_tables(Outbox, Archive)
            await Outbox.abulk_insert([{"id": i, "body": "x" * i} for i in range(1, 11)])
            held = asyncio.Event()

            async def hold_row_1() -> None:
                """Insert id 1 uncommitted; roll back once transfer() has given up a first time."""
                with pytest.raises(LookupError):
                    async with Transaction("holder") as tx:
                        await run(lambda: tx.sa_connection.execute(sa.text(
                            "INSERT INTO transfer_dst (id, body, length) VALUES (1, 'held', 0)")))
                        held.set()
                        await noted.event.wait()
                        raise LookupError("roll back")

            holder = asyncio.create_task(hold_row_1())
            await held.wait()
            ticker = Ticker()
            result: Any = await atransfer(Outbox.query(), Archive,
                                          map={"id": "id", "body": "body",
                                               "length": lambda r: len(r.body)},
                                          batch_size=100, delete_source=True, progress=False)
            await holder
            await ticker.stop()
            assert result.rows == 10 and await Outbox.acount() == 0
            assert sorted(await Archive.apluck("id")) == list(range(1, 11))
            assert (await Archive.afind(1)).body == "x"
            first = noted.times[0]
            # the first wait is 50 ms: the ticker ran during it instead of a blocked loop
            assert ticker.between(first, first + 0.045) >= 5, ticker.ticks
        finally:
            await ConnectionManager.areset()

    logger.addHandler(noted)
    logger.setLevel(logging.INFO)
    try:
        asyncio.run(main())
    finally:
        logger.removeHandler(noted)
        logger.setLevel(level)
