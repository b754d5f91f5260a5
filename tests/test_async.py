"""The awaitable forms on aiosqlite, asyncpg and aiomysql: the sync core run in the asyncio bridge.

Each test is a plain function that runs its coroutine with ``asyncio.run``;
the connections are configured on the async driver of the backend under test
(``adb``) and closed on the same event loop at the end (``arun``).
"""

from __future__ import annotations

import asyncio
import decimal
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
    RecordNotFound,
    Transaction,
    get_connection,
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
        ConnectionManager.configure({"default": {"url": self.urls[0], **options},
                                     "secondary": {"url": self.urls[1]}})


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
