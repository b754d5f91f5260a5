"""The awaitable forms on aiosqlite, asyncpg and aiomysql: the sync core run in the asyncio bridge.

Each test is a plain function that runs its coroutine with ``asyncio.run``;
the connections are configured on the async driver of the backend under test
(``adb``) and closed on the same event loop at the end (``arun``).
"""

from __future__ import annotations

import asyncio
import decimal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, ClassVar, TypeVar

import pytest
import sqlalchemy as sa

from rhosocial_ar import (
    ActiveRecord,
    BelongsTo,
    ConnectionManager,
    ConnectionModeError,
    Field,
    HasMany,
    IntegerPKMixin,
    PoolExhausted,
    RecordNotFound,
    Transaction,
    get_connection,
    request_scope,
)
from tests.conftest import BACKENDS, SERVER_URLS, _missing, _wipe, require_backend

R = TypeVar("R")

# the async driver tested for each backend, and the module it needs
ASYNC_DRIVERS = {
    "sqlite": ("sqlite+aiosqlite", "aiosqlite"),
    "postgresql": ("postgresql+asyncpg", "asyncpg"),
    "mysql": ("mysql+aiomysql", "aiomysql"),
}


class AsyncBackend:
    """The two databases of one backend, spelled with its async driver."""

    def __init__(self, name: str, urls: tuple[str, str]) -> None:
        self.name = name
        self.urls = urls

    def configure(self, **options: Any) -> None:
        """``default`` and ``secondary``, both with the pool ``options``."""
        ConnectionManager.configure({"default": {"url": self.urls[0], **options},
                                     "secondary": {"url": self.urls[1], **options}})


def async_url(url: str, drivername: str) -> str:
    return sa.make_url(url).set(drivername=drivername).render_as_string(hide_password=False)


@pytest.fixture(params=BACKENDS)
def adb(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[AsyncBackend]:
    """One backend with two empty databases, through its async driver."""
    name = request.param
    require_backend(name)
    drivername, module = ASYNC_DRIVERS[name]
    try:
        __import__(module)
        __import__("greenlet")
    except ImportError as exc:
        _missing(f"ASYNC DRIVER NOT INSTALLED, async tests on {name} did not run: {exc} "
                 f"(pip install -e '.[async]')")
    if name == "sqlite":
        urls = (f"{drivername}:///{tmp_path / 'one.db'}", f"{drivername}:///{tmp_path / 'two.db'}")
    else:
        for url in SERVER_URLS[name]:
            _wipe(url)
        urls = (async_url(SERVER_URLS[name][0], drivername), async_url(SERVER_URLS[name][1], drivername))
    ConnectionManager.reset()
    yield AsyncBackend(name, urls)
    ConnectionManager.reset()


def arun(adb: AsyncBackend, main: Callable[[], Awaitable[R]], **options: Any) -> R:
    """Configure ``adb``'s connections, await ``main()`` and close the pools, on one event loop."""
    async def wrapper() -> R:
        adb.configure(**options)
        try:
            await make_tables()
            return await main()
        finally:
            await ConnectionManager.areset()

    return asyncio.run(wrapper())


class AUser(IntegerPKMixin, ActiveRecord):
    __table_name__ = "async_users"
    name: str = Field(max_length=40, unique=True)
    age: int = 0
    balance: decimal.Decimal = decimal.Decimal("0")
    posts: ClassVar[HasMany[APost]] = HasMany(foreign_key="user_id", inverse_of="user")


class APost(IntegerPKMixin, ActiveRecord):
    __table_name__ = "async_posts"
    user_id: int
    title: str = Field(max_length=80)
    user: ClassVar[BelongsTo[AUser]] = BelongsTo(foreign_key="user_id", inverse_of="posts")


class AStat(ActiveRecord):
    __table_name__ = "async_stats"
    __connection__ = "secondary"
    key: str = Field(primary_key=True, max_length=40)
    hits: int = 0


async def make_tables() -> None:
    for model in (AUser, APost, AStat):
        await model.adrop_table()
        await model.acreate_table()


def test_crud_round_trip(adb: AsyncBackend) -> None:
    async def main() -> None:
        ann = await AUser.acreate(name="ann", age=30)
        assert ann.id is not None
        assert (await AUser.afind(ann.id)).name == "ann"
        ann.age = 31
        assert await ann.asave() == 1
        assert (await AUser.afind_by(name="ann")).age == 31   # type: ignore[union-attr]
        await AUser.where(name="ann").aupdate(age=32)
        assert (await ann.arefresh()).age == 32
        assert await ann.adelete() == 1
        with pytest.raises(RecordNotFound):
            await AUser.afind(ann.id)
        assert await AUser.acount() == 0

    arun(adb, main)


def test_every_query_spelling(adb: AsyncBackend) -> None:
    async def main() -> None:
        assert await AUser.abulk_insert([{"name": f"u{i}", "age": i} for i in range(10)]) == 10
        older = AUser.where(AUser.c.age >= 5)
        assert [u.name for u in await older.order_by("-id").aall()] == [f"u{i}" for i in range(9, 4, -1)]
        assert await AUser.where("age < ?", 3).apluck("name") == ["u0", "u1", "u2"]
        assert await AUser.where(age=4).acount() == 1
        assert await AUser.where(AUser.c.age.between(2, 4)).asum("age") == 9
        assert await AUser.amax("age") == 9 and await AUser.amin("age") == 0
        assert float(await AUser.aavg("age")) == 4.5
        assert await AUser.where(name="u3").aexists() and not await AUser.where(name="x").aexists()
        assert (await AUser.where(age=7).afirst()).name == "u7"   # type: ignore[union-attr]
        assert (await AUser.alast()).name == "u9"                 # type: ignore[union-attr]
        pages = [[u.age for u in page] async for page in AUser.where("age >= ?", 2).abatch(3)]
        assert pages == [[2, 3, 4], [5, 6, 7], [8, 9]]
        raw = await AUser.araw_query("SELECT * FROM async_users WHERE age > ? ORDER BY id", [7])
        assert [u.name for u in raw] == ["u8", "u9"]
        assert await AUser.where(AUser.c.age > 7).aupdate(age=AUser.c.age + 10) == 2
        assert await AUser.where(AUser.c.age > 10).apluck("age") == [18, 19]
        assert await AUser.where(age=0).adelete() == 1
        assert await AUser.acount() == 9

    arun(adb, main)


def test_upserts_and_bulk_upserts(adb: AsyncBackend) -> None:
    async def main() -> None:
        await AStat.ainsert_or_update({"key": "a", "hits": 1}, conflict_keys=["key"])
        await AStat.ainsert_or_update({"key": "a", "hits": 2}, conflict_keys=["key"])
        rows = [{"key": k, "hits": 5} for k in ("a", "b", "c")]
        await AStat.abulk_insert_or_update(rows, conflict_keys=["key"], batch_size=2)
        assert await AStat.order_by("key").apluck("key", "hits") == [("a", 5), ("b", 5), ("c", 5)]
        assert (await AStat.afind("b")).hits == 5

    arun(adb, main)


def test_relations_eager_loaded_are_plain_data_and_lazy_ones_raise(adb: AsyncBackend) -> None:
    async def main() -> None:
        ann = await AUser.acreate(name="ann")
        bob = await AUser.acreate(name="bob")
        for user, count in ((ann, 2), (bob, 1)):
            for i in range(count):
                await APost.acreate(user_id=user.id, title=f"{user.name} {i}")
        users = await AUser.with_("posts").order_by("id").aall()
        assert [[p.title for p in u.posts()] for u in users] == [["ann 0", "ann 1"], ["bob 0"]]
        posts = await APost.with_("user").order_by("id").aall()
        assert [p.user().name for p in posts] == ["ann", "ann", "bob"]   # type: ignore[union-attr]
        fresh = await AUser.afind(ann.id)
        with pytest.raises(ConnectionModeError, match=r"auser\.posts is not loaded.*"
                                                       r"with_\('posts'\).*await auser\.posts\.aload\(\)"):
            fresh.posts()
        assert [p.title for p in await fresh.posts.aload()] == ["ann 0", "ann 1"]
        assert len(fresh.posts()) == 2            # loaded now: plain data
        assert await fresh.posts.query().acount() == 2

    arun(adb, main)


def test_transactions_savepoints_and_isolation(adb: AsyncBackend) -> None:
    async def main() -> None:
        conn = get_connection()
        async with AUser.atransaction():
            await AUser.acreate(name="kept")
            with pytest.raises(ZeroDivisionError):
                async with Transaction(conn):            # a savepoint
                    await AUser.acreate(name="undone")
                    1 / 0
            async with Transaction(conn):
                await AUser.acreate(name="kept too")
        assert await AUser.order_by("id").apluck("name") == ["kept", "kept too"]
        with pytest.raises(ZeroDivisionError):
            async with Transaction(conn, isolation_level="SERIALIZABLE"):
                await AUser.acreate(name="rolled back")
                1 / 0
        assert await AUser.acount() == 2

        @Transaction(conn)
        async def transfer() -> None:
            await AUser.where(name="kept").aupdate(age=1)
            raise ValueError("no")

        with pytest.raises(ValueError):
            await transfer()
        assert await AUser.where(age=1).acount() == 0

    arun(adb, main)


class HookedUser(IntegerPKMixin, ActiveRecord):
    __table_name__ = "async_hooked_users"
    name: str = Field(max_length=40)
    calls: ClassVar[list[str]] = []

    def before_save(self) -> None:
        self.calls.append("before_save")

    def before_create(self) -> None:
        self.calls.append("before_create")

    def after_create(self) -> None:
        self.calls.append("after_create")

    def after_save(self) -> None:
        self.calls.append("after_save")

    def after_commit(self) -> None:
        self.calls.append("after_commit")
        if self.name == "audited":    # a sync hook's own statements, inside the awaited operation
            AStat.insert_or_update({"key": "audited", "hits": 1}, conflict_keys=["key"])

    def after_rollback(self) -> None:
        self.calls.append("after_rollback")


def test_hooks_run_in_order_and_after_commit_after_the_awaited_commit(adb: AsyncBackend) -> None:
    async def main() -> None:
        await HookedUser.adrop_table()
        await HookedUser.acreate_table()
        HookedUser.calls.clear()
        await HookedUser.acreate(name="ann")
        assert HookedUser.calls == ["before_save", "before_create", "after_create", "after_save",
                                    "after_commit"]
        HookedUser.calls.clear()
        async with HookedUser.atransaction():
            await HookedUser.acreate(name="bob")
            assert "after_commit" not in HookedUser.calls
        assert HookedUser.calls[-1] == "after_commit"
        HookedUser.calls.clear()
        with pytest.raises(RuntimeError):
            async with HookedUser.atransaction():
                await HookedUser.acreate(name="eve")
                raise RuntimeError
        assert HookedUser.calls[-1] == "after_rollback"
        assert await HookedUser.order_by("id").apluck("name") == ["ann", "bob"]
        await HookedUser.acreate(name="audited")
        assert (await AStat.afind("audited")).hits == 1
        await HookedUser.adrop_table()

    arun(adb, main)


def test_the_wrong_way_names_the_right_call(adb: AsyncBackend) -> None:
    async def main() -> None:
        ann = await AUser.acreate(name="ann")
        with pytest.raises(ConnectionModeError, match=r"connection 'default' is async: "
                                                       r"use await AUser\.afind\(\.\.\.\)"):
            AUser.find(ann.id)
        with pytest.raises(ConnectionModeError, match=r"use await query\.aall\(\.\.\.\)"):
            AUser.where(name="ann").all()
        ann.age = 5
        with pytest.raises(ConnectionModeError, match=r"use await auser\.asave\(\.\.\.\)"):
            ann.save()
        with pytest.raises(ConnectionModeError, match=r"use async with Transaction"):
            with AUser.transaction():
                pass
        with pytest.raises(ConnectionModeError, match=r"AUser\.acreate_table"):
            AUser.create_table()
        async with AUser.atransaction():            # sync code inside an async transaction
            with pytest.raises(ConnectionModeError, match=r"use await AUser\.acount"):
                AUser.count()
        # the reverse: an awaitable on a sync connection
        ConnectionManager.configure("plain", {"url": "sqlite://"})
        with AUser.using_connection("plain"):
            with pytest.raises(ConnectionModeError, match=r"connection 'plain' is sync: "
                                                           r"call AUser\.count\(\.\.\.\) without await"):
                await AUser.acount()
            AUser.create_table()
            assert AUser.count() == 0
            with APost.using_connection("plain"):
                APost.create_table()
                bob = AUser.create(name="bob")
                with pytest.raises(ConnectionModeError, match=r"connection 'plain' is sync: "
                                                               r"call auser\.posts\(\) without await"):
                    await bob.posts.aload()
                assert bob.posts() == []
        with pytest.raises(ConnectionModeError, match=r"connection 'plain' is sync: "
                                                       r"use with Transaction\(\.\.\.\), not async with"):
            async with Transaction(get_connection("plain")):
                pass
        assert await AUser.acount() == 1       # nothing was left open on either

    arun(adb, main)


def test_sync_code_is_unchanged_on_sync_connections(tmp_path: Any) -> None:
    ConnectionManager.reset()
    ConnectionManager.configure("default", {"url": f"sqlite:///{tmp_path / 'sync.db'}"})
    try:
        AUser.create_table()
        AUser.create(name="ann")
        assert not get_connection().is_async
        with pytest.raises(ConnectionModeError, match="is sync"):
            asyncio.run(AUser.acount())
        assert AUser.count() == 1
    finally:
        ConnectionManager.reset()


def test_an_existing_async_engine(adb: AsyncBackend) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    async def main() -> None:
        engine = create_async_engine(adb.urls[0])
        ConnectionManager.configure("mine", {"engine": engine})
        conn = get_connection("mine")
        assert conn.is_async and conn.engine is engine.sync_engine
        with AUser.using_connection("mine"):
            await AUser.acreate(name="via engine")
        assert await AUser.where(name="via engine").aexists()
        await ConnectionManager.areset()
        assert await _still_usable(engine)       # ours to dispose, not the library's
        await engine.dispose()

    arun(adb, main)


async def _still_usable(engine: Any) -> bool:
    async with engine.connect() as conn:
        return bool((await conn.execute(sa.text("SELECT 1"))).scalar() == 1)


def checked_out() -> dict[str, int]:
    return {c.name: c.engine.pool.checkedout() for c in ConnectionManager.connections()}  # type: ignore[attr-defined]


def test_200_tasks_on_a_pool_of_10_each_in_its_own_block(adb: AsyncBackend) -> None:
    """Each task routes AUser to a connection of its own choice and writes in a transaction."""
    async def task(i: int) -> tuple[int, int]:
        name = ("default", "secondary")[i % 2]
        with AUser.using_connection(name):
            async with AUser.atransaction():
                for j in range(3):       # a write first: SQLite takes its lock here
                    await AUser.acreate(name=f"t{i}-{j}", age=i)
                await asyncio.sleep(0)   # let the others run in the middle of the transaction
                own = await AUser.where("name LIKE ?", f"t{i}-%").acount()
                total = await AUser.where(age=i).asum("age")
            assert get_connection(name).name == name
        return own, int(total)

    async def main() -> None:
        for name in ("default", "secondary"):
            with AUser.using_connection(name):
                await AUser.adrop_table()
                await AUser.acreate_table()
        results = await asyncio.gather(*(task(i) for i in range(200)))
        assert results == [(3, 3 * i) for i in range(200)]
        for name, parity in (("default", 0), ("secondary", 1)):
            with AUser.using_connection(name):
                assert await AUser.acount() == 300
                assert await AUser.asum("age") == 3 * sum(range(parity, 200, 2))
        assert checked_out() == {"default": 0, "secondary": 0}

    arun(adb, main, pool_size=10, max_overflow=0, pool_timeout=30)


def test_a_cancelled_task_leaves_nothing_applied_and_its_connection_usable(adb: AsyncBackend) -> None:
    started = asyncio.Event

    async def doomed(event: asyncio.Event, slow: bool) -> None:
        async with AUser.atransaction():
            await AUser.acreate(name="doomed")
            event.set()
            if slow:         # cancelled inside the bridge, while the driver waits
                await AUser.araw_query(SLOW_QUERY[adb.name])
            else:            # cancelled between statements
                await asyncio.sleep(30)

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(doomed(started(), slow=False), 0.3)
        # aiosqlite cannot interrupt a statement, and the connection it then drops is never
        # closed while the cancelled task's traceback holds its cursor: SQLite stays locked
        for slow in (False, True) if adb.name != "sqlite" else (False,):
            event = started()
            task = asyncio.create_task(doomed(event, slow))
            await event.wait()
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await AUser.acount() == 0
        assert checked_out()["default"] == 0
        for _ in range(2):        # the pool's one connection, used again
            await AUser.acreate(name=f"after {_}")
        assert await AUser.acount() == 2

    arun(adb, main, pool_size=1, max_overflow=0)


# a statement that runs for a few seconds on each backend
SLOW_QUERY = {
    "postgresql": "SELECT * FROM async_users WHERE pg_sleep(3) IS NOT NULL",
    "mysql": "SELECT * FROM async_users WHERE SLEEP(3) = 0",
}


def test_pool_exhaustion_is_the_same_error_as_sync(adb: AsyncBackend) -> None:
    async def holder(release: asyncio.Event, held: asyncio.Event) -> None:
        async with AUser.atransaction():
            await AUser.acreate(name="holder")
            held.set()
            await release.wait()

    async def main() -> None:
        release, held = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(holder(release, held))
        await held.wait()
        with pytest.raises(PoolExhausted, match=r"connection 'default': every pooled connection is in use "
                                                r"\(1 checked out; pool_size=1, max_overflow=0\)"):
            await AUser.acount()
        release.set()
        await task
        assert await AUser.acount() == 1

    arun(adb, main, pool_size=1, max_overflow=0, pool_timeout=0.3)


def test_the_bridges_internals_are_there() -> None:
    """What fastpath/bridge.py relies on exists in the installed SQLAlchemy and aiosqlite."""
    from rhosocial_ar.fastpath import bridge

    assert bridge.check() == []


def test_the_public_fallback_runs_the_same_code(adb: AsyncBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without SQLAlchemy's greenlet_spawn, AsyncSession.run_sync does the bridging."""
    from rhosocial_ar.fastpath import bridge

    monkeypatch.setattr(bridge, "_greenlet_spawn", None)
    monkeypatch.setattr(bridge, "_reuse", False)
    assert bridge.check() == ["sqlalchemy.util.greenlet_spawn is gone (AsyncSession.run_sync is used)",
                              "SQLAlchemy's bridge greenlets are no longer marked "
                              "__sqlalchemy_greenlet_provider__ (a new greenlet per call)"]

    async def main() -> None:
        async with AUser.atransaction():
            await AUser.acreate(name="ann")
        assert await AUser.apluck("name") == ["ann"]

    arun(adb, main)


def test_without_kept_greenlets_greenlet_spawn_runs_the_same_code(
        adb: AsyncBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """bridge.spawn keeps its greenlets (fastpath/greenlets.py); without them, a new one per call."""
    from rhosocial_ar.fastpath import bridge

    monkeypatch.setattr(bridge, "_reuse", False)

    async def main() -> None:
        async with AUser.atransaction():
            await AUser.acreate(name="ann")
        with pytest.raises(sa.exc.IntegrityError):
            await AUser.acreate(name="ann")
        assert await AUser.apluck("name") == ["ann"]

    arun(adb, main)


def test_per_task_blocks_and_a_request_scope(adb: AsyncBackend) -> None:
    """Blocks are per task as in sync code per thread; in a request scope, tasks see the request's."""
    async def count_ann() -> int:
        return await AUser.where("name LIKE ?", "ann%").acount()

    async def routed_elsewhere(entered: asyncio.Event, done: asyncio.Event) -> None:
        with AUser.using_connection("secondary"):
            entered.set()
            await done.wait()

    async def main() -> None:
        with AUser.using_connection("secondary"):
            await AUser.adrop_table()
            await AUser.acreate_table()
        entered, done = asyncio.Event(), asyncio.Event()
        other = asyncio.create_task(routed_elsewhere(entered, done))
        await entered.wait()
        await AUser.acreate(name="ann")          # this task's routing is its own: 'default'
        done.set()
        await other
        with AUser.using_connection("secondary"):
            assert await AUser.acount() == 0
        with request_scope():
            async with AUser.atransaction():
                await AUser.acreate(name="ann2")
                # a task the request starts sees the request's open transaction (uncommitted row)
                assert await asyncio.create_task(count_ann()) == 2
            async with AUser.atransaction():
                await asyncio.create_task(AUser.acreate(name="bob"))
        assert await AUser.order_by("id").apluck("name") == ["ann", "ann2", "bob"]

    arun(adb, main)


def test_a_block_closed_in_another_task_is_rolled_back_with_context_not_shared(adb: AsyncBackend) -> None:
    """As in sync code with another thread: the block's work is not committed."""
    from rhosocial_ar import ContextNotShared

    async def main() -> None:
        tx = Transaction(get_connection())

        async def enter() -> None:
            await tx.__aenter__()
            await AUser.acreate(name="lost")

        await asyncio.create_task(enter())
        with pytest.raises(ContextNotShared):
            await tx.__aexit__(None, None, None)
        assert await AUser.acount() == 0
        assert checked_out()["default"] == 0

    arun(adb, main)


def test_without_greenlet_sync_works_and_an_async_url_says_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['greenlet'] = None\n"          # as if it were not installed
        "from rhosocial_ar import ConfigurationError, ConnectionManager, get_connection\n"
        "ConnectionManager.configure('default', {'url': 'sqlite://'})\n"
        "assert get_connection().is_async is False\n"
        "try:\n"
        "    ConnectionManager.configure('a', {'url': 'sqlite+aiosqlite://'})\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == ("connection 'a': the async driver 'sqlite+aiosqlite' needs greenlet: "
                                   "pip install 'rhosocial_ar[async]'"), done.stderr


def test_asyncmy_as_well() -> None:
    """``mysql+asyncmy://`` (not in the extra: aiomysql is) runs the same code."""
    pytest.importorskip("asyncmy", reason="asyncmy is optional (aiomysql is the extra's MySQL driver)")
    require_backend("mysql")
    for url in SERVER_URLS["mysql"]:
        _wipe(url)
    urls = tuple(async_url(url, "mysql+asyncmy") for url in SERVER_URLS["mysql"])

    async def main() -> None:
        await AUser.abulk_insert([{"name": f"u{i}", "age": i} for i in range(5)])
        async with AUser.atransaction():
            await AUser.where(AUser.c.age >= 3).aupdate(age=AUser.c.age * 10)
            with pytest.raises(ZeroDivisionError):
                async with AUser.atransaction():
                    await AUser.acreate(name="undone")
                    1 / 0
        assert await AUser.order_by("id").apluck("age") == [0, 1, 2, 30, 40]
        assert (await AUser.afind_by(name="u4")).age == 40   # type: ignore[union-attr]

    ConnectionManager.reset()
    try:
        arun(AsyncBackend("mysql", (urls[0], urls[1])), main)
    finally:
        ConnectionManager.reset()


def test_the_fast_path_runs_on_the_async_drivers(adb: AsyncBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same fast path: lookups, queries, saves and counts skip Connection.execute."""
    through_sqlalchemy: list[str] = []
    execute = sa.Connection.execute

    def counted(self: sa.Connection, statement: Any, *args: Any, **kwargs: Any) -> Any:
        through_sqlalchemy.append(str(statement))
        return execute(self, statement, *args, **kwargs)

    async def main() -> None:
        ann = await AUser.acreate(name="ann")
        monkeypatch.setattr(sa.Connection, "execute", counted)
        assert (await AUser.afind(ann.id)).name == "ann"
        assert len(await AUser.where(name="ann").aall()) == 1
        ann.age = 3
        assert await ann.asave() == 1
        assert await AUser.where(AUser.c.age > 1).acount() == 1
        assert through_sqlalchemy == []

    arun(adb, main)
