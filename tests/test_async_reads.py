"""A read outside a transaction on asyncpg runs in autocommit: one round trip, no BEGIN/ROLLBACK.

What asyncpg sends is seen through its own query logger (which reports its
BEGIN, COMMIT and ROLLBACK, though not prepared statements), on every pooled
connection; transactions, and connections at another isolation level, keep
their BEGIN.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rhosocial_ar import ConnectionManager, get_connection
from tests.conftest import SERVER_URLS, _missing, _wipe, require_backend
from tests.test_async import ASYNC_DRIVERS, AUser, async_url


def sent_on_every_connection(engine: Any) -> list[str]:
    """The statements asyncpg runs on each connection the pool opens from now on."""
    from sqlalchemy import event

    sent: list[str] = []

    @event.listens_for(engine, "connect")
    def log_queries(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(lambda q: sent.append(q.query))

    return sent


def begins(sent: list[str]) -> int:
    return sum(q.lstrip().upper().startswith("BEGIN") for q in sent)


@pytest.fixture
def pg_async() -> str:
    require_backend("postgresql")
    try:
        asyncpg = __import__("asyncpg")
    except ImportError as exc:
        _missing(f"ASYNC DRIVER NOT INSTALLED, asyncpg tests did not run: {exc}")
    if not hasattr(asyncpg.Connection, "add_query_logger"):   # the lowest versions' asyncpg
        pytest.skip(f"asyncpg {asyncpg.__version__} has no query logger (0.29 and later): "
                    f"what it sends cannot be seen")
    _wipe(SERVER_URLS["postgresql"][0])
    return async_url(SERVER_URLS["postgresql"][0], ASYNC_DRIVERS["postgresql"][0])


def run(config: dict[str, Any], main: Any) -> Any:
    async def wrapper() -> Any:
        ConnectionManager.reset()
        ConnectionManager.configure("default", config)
        try:
            sent = sent_on_every_connection(get_connection().engine)
            await AUser.adrop_table()
            await AUser.acreate_table()
            del sent[:]
            return await main(sent)
        finally:
            await ConnectionManager.areset()

    return asyncio.run(wrapper())


def test_reads_send_no_begin_and_writes_and_blocks_do(pg_async: str) -> None:
    async def main(sent: list[str]) -> None:
        ann = await AUser.acreate(name="ann", age=30)
        assert begins(sent) == 1                                  # a write is a transaction
        del sent[:]
        assert (await AUser.afind(ann.id)).name == "ann"
        assert await AUser.where("age > ?", 20).acount() == 1
        assert [u.name for u in await AUser.where(age=30).aall()] == ["ann"]
        assert begins(sent) == 0 and not any("ROLLBACK" in q.upper() for q in sent)
        async with AUser.atransaction():
            await AUser.where(id=ann.id).aupdate(age=31)
            assert (await AUser.afind(ann.id)).age == 31          # in the block: its own write
        assert begins(sent) == 1
        await AUser.acreate(name="bob")                           # the pool is not left in autocommit
        assert begins(sent) == 2

    run({"url": pg_async, "pool_size": 1, "max_overflow": 0}, main)


def test_a_connection_at_another_isolation_level_keeps_its_begin(pg_async: str) -> None:
    """One statement in autocommit is a READ COMMITTED transaction: other levels are not switched."""
    from sqlalchemy.ext.asyncio import create_async_engine

    async def main(sent: list[str]) -> None:
        await AUser.acreate(name="ann")
        del sent[:]
        assert await AUser.acount() == 1
        assert begins(sent) == 1
        assert "REPEATABLE READ" in next(q for q in sent if q.upper().startswith("BEGIN")).upper()

    engine = create_async_engine(pg_async, isolation_level="REPEATABLE READ")
    try:
        run({"engine": engine}, main)
    finally:
        asyncio.run(engine.dispose())
