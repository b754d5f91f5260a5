"""A read outside a transaction on asyncpg runs in autocommit: one round trip, no BEGIN/ROLLBACK;
so does a create that is one INSERT with no hook inside its transaction.

What asyncpg sends is seen through its own query logger (which reports its
BEGIN, COMMIT and ROLLBACK, though not prepared statements), on every pooled
connection; transactions, and connections at another isolation level, keep
their BEGIN.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from rhosocial_ar import ActiveRecord, ConnectionManager, Field, IntegerPKMixin, get_connection
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


async def settled(sent: list[str]) -> list[str]:
    """``sent`` once asyncpg has called its loggers (soon after each query)."""
    await asyncio.sleep(0.02)
    return sent


def test_reads_send_no_begin_and_writes_and_blocks_do(pg_async: str) -> None:
    async def main(sent: list[str]) -> None:
        ann = await AUser.acreate(name="ann", age=30)
        await AUser.where(id=ann.id).aupdate(age=30)
        assert begins(await settled(sent)) == 1                   # a write is a transaction
        del sent[:]
        assert (await AUser.afind(ann.id)).name == "ann"
        assert await AUser.where("age > ?", 20).acount() == 1
        assert [u.name for u in await AUser.where(age=30).aall()] == ["ann"]
        assert begins(sent) == 0 and not any("ROLLBACK" in q.upper() for q in sent)
        async with AUser.atransaction():
            await AUser.where(id=ann.id).aupdate(age=31)
            assert (await AUser.afind(ann.id)).age == 31          # in the block: its own write
        assert begins(sent) == 1
        await AUser.where(id=ann.id).aupdate(age=32)              # the pool is not left in autocommit
        assert begins(await settled(sent)) == 2

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


class Tracked(IntegerPKMixin, ActiveRecord):
    """A model whose hooks run outside the INSERT's transaction: its create may be the INSERT alone."""

    __table_name__ = "async_tracked"
    name: str = Field(max_length=40, unique=True)
    calls: ClassVar[list[str]] = []

    def before_save(self) -> None:
        self.calls.append(f"before_save {self.name}")

    def before_create(self) -> None:
        self.calls.append(f"before_create {self.name}")

    def after_commit(self) -> None:
        self.calls.append(f"after_commit {self.name} {self.id is not None}")

    def after_rollback(self) -> None:
        self.calls.append(f"after_rollback {self.name} {self.id}")


class TrackedInside(Tracked):
    """after_save runs inside the transaction (and may fail it): BEGIN and COMMIT stay."""

    __table_name__ = "async_tracked_inside"

    def after_save(self) -> None:
        self.calls.append(f"after_save {self.name}")
        if self.name == "refused":
            raise ValueError("refused by after_save")


def test_a_create_without_hooks_inside_is_its_insert_alone(pg_async: str) -> None:
    """No BEGIN, no COMMIT; the same hooks in the same order, the same errors and rollback state."""
    async def main(sent: list[str]) -> None:
        for model in (Tracked, TrackedInside):
            await model.adrop_table()
            await model.acreate_table()
        del (await settled(sent))[:], Tracked.calls[:]
        ann = await Tracked.acreate(name="ann")
        assert (await settled(sent)) == [] and ann.id is not None     # the INSERT: a prepared statement
        assert Tracked.calls == ["before_save ann", "before_create ann", "after_commit ann True"]
        del Tracked.calls[:]
        again = Tracked(name="ann")
        with pytest.raises(sa.exc.IntegrityError):
            await again.asave()
        assert Tracked.calls == ["before_save ann", "before_create ann", "after_rollback ann None"]
        assert again.id is None and again.is_new_record
        assert await Tracked.acount() == 1
        assert (await settled(sent)) == []
        # the connection went back to the pool at its own level: a block still rolls back
        with pytest.raises(RuntimeError):
            async with Tracked.atransaction():
                await Tracked.acreate(name="bob")
                raise RuntimeError("undo")
        assert await Tracked.where(name="bob").acount() == 0
        assert begins(await settled(sent)) == 1
        del sent[:], Tracked.calls[:]
        await TrackedInside.acreate(name="cy")
        assert begins(await settled(sent)) == 1 and any(q.startswith("COMMIT") for q in sent)
        with pytest.raises(ValueError, match="refused by after_save"):
            await TrackedInside.acreate(name="refused")
        assert await TrackedInside.where(name="refused").acount() == 0
        assert Tracked.calls[-2:] == ["after_save refused", "after_rollback refused None"]
        with pytest.raises(sa.exc.IntegrityError):                    # as on the INSERT alone
            await TrackedInside.acreate(name="cy")
        del sent[:]
        async with Tracked.atransaction():                            # inside a block: the block's
            await Tracked.acreate(name="dee")
        assert begins(await settled(sent)) == 1

    run({"url": pg_async, "pool_size": 1, "max_overflow": 0}, main)


def test_in_lists_of_any_length_beside_other_parameters(pg_async: str) -> None:
    """asyncpg's numbered placeholders: SQLAlchemy's rendering of IN lists kept per length."""
    async def main(sent: list[str]) -> None:
        await AUser.abulk_insert([{"name": f"u{i}", "age": i} for i in range(1, 8)])
        for ids in ([1], [2, 3], [1, 2, 3], [3, 2], [7, 1, 4, 5], (6,), [1], [2, 3]):
            query = AUser.where(id=list(ids)).where("age >= ?", 2).order_by("id")
            assert await query.apluck("id") == sorted(i for i in ids if i >= 2)
            assert [u.id for u in await query.aall()] == sorted(i for i in ids if i >= 2)
        both = AUser.where(name=["u1", "u3", "u4"], age=[1, 3, 5]).order_by("id")
        assert await both.apluck("name") == ["u1", "u3"]
        assert await AUser.where(id=[]).acount() == 0
        assert await AUser.where(AUser.c.id.in_([2, 4])).order_by("-id").apluck("id") == [4, 2]

    run({"url": pg_async, "pool_size": 1, "max_overflow": 0}, main)
