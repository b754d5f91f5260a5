"""Read replicas with read-your-writes on asyncpg, against a real streaming standby, per task.

The routing is the sync core's, run in the bridge: a task that wrote reads
from the primary for ``__read_your_writes__`` seconds, every other task
reads from the lagging standby, and an unreachable standby sends reads to
the primary with a warning.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from rhosocial_ar import ConnectionManager, ReplicaUnavailableWarning, routing
from tests.conftest import SERVER_URLS, _missing, require_standby
from tests.standby import Standby, running_standby
from tests.test_async import ASYNC_DRIVERS, async_url
from tests.test_records import count_statements
from tests.test_replicas import DATABASE, DELAY_MS, Reading

R = TypeVar("R")
DRIVER = ASYNC_DRIVERS["postgresql"][0]


@pytest.fixture(scope="module")
def standby() -> Iterator[Standby]:
    require_standby()
    try:
        __import__("asyncpg")
    except ImportError as exc:
        _missing(f"ASYNC DRIVER NOT INSTALLED, async replica tests did not run: {exc}")
    with running_standby(delay_ms=DELAY_MS) as running:
        yield running


@pytest.fixture
def areplica(standby: Standby) -> Iterator[Callable[[Callable[[], Awaitable[Any]]], Any]]:
    """Runs a coroutine function with 'default' on the primary and 'replica' on the standby."""
    def arun(main: Callable[[], Awaitable[R]], pool_size: int = 5) -> R:
        async def wrapper() -> R:
            ConnectionManager.reset()
            ConnectionManager.configure({
                "default": {"url": async_url(SERVER_URLS["postgresql"][0], DRIVER),
                            "pool_size": pool_size},
                "replica": {"url": async_url(standby.url(DATABASE), DRIVER), "read_only": True,
                            "pool_size": pool_size, "connect_args": {"timeout": 2}},
            })
            try:
                return await main()
            finally:
                await ConnectionManager.areset()

        return asyncio.run(wrapper())

    async def tables() -> None:
        await Reading.adrop_table()
        await Reading.acreate_table()

    arun(tables)
    standby.catch_up()                  # the table exists on the standby too
    routing._replica_down_until.clear()
    yield arun
    routing._replica_down_until.clear()


def selects_on(name: str) -> Callable[[], list[str]]:
    seen = count_statements(name)
    return lambda: [s for s in seen if s.lstrip().upper().startswith("SELECT")]


def test_read_your_writes_is_per_task(areplica: Any, standby: Standby) -> None:
    async def main() -> None:
        on_replica = selects_on("replica")
        written = asyncio.Event()

        async def writer() -> Any:
            await Reading.acreate(value="mine")
            written.set()
            return await Reading.afind_by(value="mine")       # right after its write: primary

        async def other() -> Any:
            await written.wait()
            return await Reading.afind_by(value="mine")       # another task: the replica

        mine, elsewhere = await asyncio.gather(writer(), other())
        assert mine is not None and mine.value == "mine"
        assert elsewhere is None                              # the standby lags DELAY_MS
        assert len(on_replica()) == 1
        assert await Reading.afind_by(value="mine") is None   # this task never wrote
        await asyncio.to_thread(standby.catch_up)
        assert (await Reading.afind_by(value="mine")) is not None
        assert len(on_replica()) == 3

    areplica(main)


def test_the_window_ends_and_transactions_read_the_primary(areplica: Any, standby: Standby) -> None:
    async def main() -> None:
        on_replica = selects_on("replica")
        await Reading.acreate(value="lagging")
        await asyncio.sleep(Reading.__read_your_writes__ + 0.05)
        assert await Reading.afind_by(value="lagging") is None     # window over: the replica
        assert len(on_replica()) == 1
        async with Reading.atransaction():
            await Reading.acreate(value="in-tx")
            assert await Reading.where(value=["lagging", "in-tx"]).acount() == 2
        assert len(on_replica()) == 1                             # the block read the primary
        await asyncio.to_thread(standby.catch_up)
        await asyncio.sleep(Reading.__read_your_writes__)
        record = await Reading.afind_by(value="lagging")          # from the replica ...
        assert record is not None and len(on_replica()) == 2
        record.value = "saved"
        await record.asave()                                      # ... saved to the primary
        assert (await Reading.using("default").afind(record.id)).value == "saved"

    areplica(main)


def test_an_unreachable_standby_sends_reads_to_the_primary(areplica: Any, standby: Standby) -> None:
    async def main() -> None:
        await Reading.acreate(value="kept")
        await asyncio.to_thread(standby.catch_up)
        await asyncio.sleep(Reading.__read_your_writes__)
        assert await Reading.acount() == 1                        # the replica is in use
        await asyncio.to_thread(standby.pause)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                started = time.monotonic()
                assert await Reading.afind_by(value="kept") is not None   # the primary answers
                assert await Reading.acount() == 1                        # the replica is skipped
                elapsed = time.monotonic() - started
            assert [w.category for w in caught] == [ReplicaUnavailableWarning]
            assert "'replica' is unreachable" in str(caught[0].message)
            assert elapsed < 3
        finally:
            await asyncio.to_thread(standby.resume)
        routing._replica_down_until.clear()
        await asyncio.to_thread(standby.catch_up)
        assert await Reading.using("replica").acount() == 1           # back in use

    areplica(main)


def test_200_tasks_each_read_their_own_writes(areplica: Any) -> None:
    """Each of 200 tasks on a pool of 5 finds its own row at once; none sees another's window."""
    async def main() -> None:
        on_replica = selects_on("replica")
        start = asyncio.Event()

        async def task(i: int) -> tuple[bool, bool]:
            await start.wait()
            if i % 2:
                await Reading.acreate(value=f"w{i}")
                return True, await Reading.afind_by(value=f"w{i}") is not None
            return False, await Reading.afind_by(value=f"w{i + 1}") is not None

        tasks = [asyncio.create_task(task(i)) for i in range(200)]
        start.set()
        results = await asyncio.gather(*tasks)
        assert all(found for wrote, found in results if wrote)       # every writer: primary
        readers = [found for wrote, found in results if not wrote]
        assert len(on_replica()) == len(readers)                     # every reader: the replica
        assert not any(readers)                                      # which lags behind

    areplica(main)
