"""pytest plugin: each test on a clean slate, on every configured connection.

    # conftest.py (the plugin loads itself once rhosocial_ar is installed)
    @pytest.fixture(scope='session', autouse=True)
    def databases(ar_create_database):
        ConnectionManager.configure('default', {'url': ar_create_database(SERVER_URL)})
        ConnectionManager.create_all()

    def test_signup(ar_db):
        User.create(username='ann')          # committed as far as the code can tell,
        with User.transaction(): ...         # rolled back once the test ends

``ar_db`` holds one database session per configured database for the whole
test, in a transaction that is rolled back at its end; every checkout of the
connection's pool is that session, and the library's transactions in it are
savepoints (the "join an external transaction" recipe of SQLAlchemy, the
convention of Rails' transactional tests and pytest-django's ``db``).
``docs/testing.md`` says what that implies.

``ar_adb`` is its twin for ``async def`` tests on async connections (anyio's
``@pytest.mark.anyio``, pytest-asyncio): the sessions are taken and given
back on the test's event loop (``apinned()``, ``Pin.arelease()``).

    @pytest.mark.anyio
    async def test_signup(ar_adb):
        await User.acreate(username='ann')
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from . import aio, dialects
from .connections import ConnectionManager
from .errors import ConfigurationError, TwoPhaseNotSupported
from .fastpath import bridge

__all__ = ["Pin", "apinned", "ar_adb", "ar_create_database", "ar_db", "pinned"]

# what a dialect does to a transaction, taken over while a test holds the session
_TAKEN_OVER = ("do_begin", "do_commit", "do_rollback", "set_isolation_level", "do_begin_twophase")


class Pin:
    """One database session held in a transaction for a test; its pool's only connection.

    ``BEGIN``, ``COMMIT`` and ``ROLLBACK`` of the code under test become
    ``SAVEPOINT``, ``RELEASE`` and ``ROLLBACK TO`` inside that transaction,
    which ``release()`` rolls back.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.checkout = engine.raw_connection()     # from the engine's own pool, given back at the end
        self.dbapi: Any = self.checkout.dbapi_connection
        self.savepoints: list[str] = []
        self._names = (f"ar_test_{i}" for i in itertools.count())
        engine.dialect.do_begin(self.checkout)      # the outer transaction (BEGIN where it is explicit)
        # one connection: a second thread waits for it, as long as the engine's pool would
        timeout = getattr(engine.pool, "timeout", lambda: 30.0)()
        # an async engine's tasks wait for it on the event loop, not by blocking it
        pool_class = sa.pool.AsyncAdaptedQueuePool if engine.dialect.is_async else sa.pool.QueuePool
        self.pool = pool_class(self._same_session, pool_size=1, max_overflow=0, timeout=timeout,
                               reset_on_return=None, dialect=engine.dialect)
        self._engines: list[tuple[Engine, Any, dict[str, Any]]] = []
        self.serve(engine)

    def _same_session(self) -> Any:
        return self.dbapi

    def serve(self, engine: Engine) -> None:
        """Make ``engine``'s checkouts this session (a second connection to the same database)."""
        dialect = engine.dialect
        kept = {name: vars(dialect)[name] for name in _TAKEN_OVER if name in vars(dialect)}
        self._engines.append((engine, engine.pool, kept))
        engine.pool = self.pool
        replacements: dict[str, Callable[..., None]] = {
            "do_begin": lambda _connection: self._execute("SAVEPOINT", self._push()),
            "do_commit": lambda _connection: self._end(rollback=False),
            "do_rollback": lambda _connection: self._end(rollback=True),
            # the test's transaction keeps its level; AUTOCOMMIT would commit it
            "set_isolation_level": lambda _connection, _level: None,
            "do_begin_twophase": _no_two_phase,
        }
        for name, replacement in replacements.items():
            setattr(dialect, name, replacement)

    def _push(self) -> str:
        name = next(self._names)
        self.savepoints.append(name)
        return name

    def _end(self, rollback: bool) -> None:
        if not self.savepoints:      # a rollback with nothing begun (a pool's reset): nothing to do
            return
        name = self.savepoints.pop()
        if rollback:
            self._execute("ROLLBACK TO SAVEPOINT", name)
        self._execute("RELEASE SAVEPOINT", name)

    def _execute(self, verb: str, name: str) -> None:
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(f"{verb} {name}")
        finally:
            cursor.close()

    async def arelease(self) -> None:
        """``release()`` on the test's event loop (a Pin of async connections)."""
        await aio.run(self.release)

    def release(self) -> None:
        """Roll back everything the test wrote; the engines get their pools and dialects back."""
        leaked = self.pool.checkedout()
        for engine, pool, kept in reversed(self._engines):
            engine.pool = pool
            for name in _TAKEN_OVER:
                if name in kept:
                    setattr(engine.dialect, name, kept[name])
                else:
                    vars(engine.dialect).pop(name, None)
        try:
            self.dbapi.rollback()
        finally:
            if self.engine.dialect.is_async:
                self.checkout.invalidate()      # closed on the test's loop, which ends with it
            else:
                self.checkout.close()
        if leaked:
            raise ConfigurationError(
                f"{self.engine.url.render_as_string(hide_password=True)}: the test left "
                f"{leaked} connection(s) checked out (a block still open?); its work is rolled back")


def _no_two_phase(*_args: Any) -> None:
    raise TwoPhaseNotSupported(
        "two-phase commit cannot run inside ar_db's transaction; test it on a throwaway "
        "database (ar_create_database) without ar_db")


def pinned() -> list[Pin]:
    """A Pin per configured database: connections with the same URL share one session."""
    pins: dict[str, Pin] = {}
    try:
        for connection in ConnectionManager.connections():
            if connection.is_async and not aio.in_bridge():
                raise ConfigurationError(
                    f"connection {connection.name!r} is async: take the ar_adb fixture in an "
                    f"async test (or await apinned()), not ar_db (docs/testing.md)")
            key = connection.engine.url.render_as_string(hide_password=False)
            if key in pins:
                pins[key].serve(connection.engine)     # a replica configured on the primary's URL
            else:
                pins[key] = Pin(connection.engine)
    except BaseException:
        for pin in pins.values():
            pin.release()
        raise
    return list(pins.values())


async def apinned() -> list[Pin]:
    """``pinned()`` on the event loop: async connections (and sync ones) held for a test."""
    return await aio.run(_pinned_on_this_loop)


def _pinned_on_this_loop() -> list[Pin]:
    # idle connections made on another loop (a session fixture's, an earlier test's)
    # cannot serve this one: their sockets are closed and they leave the pool
    loop = asyncio.get_running_loop()
    for connection in ConnectionManager.connections():
        if connection.is_async:
            bridge.close_orphans(connection.engine, loop)
    return pinned()


def _release_all(pins: list[Pin]) -> None:
    errors = []
    for pin in pins:
        try:
            pin.release()
        except Exception as exc:  # release the others first; the first error is raised
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def ar_db() -> Iterator[None]:
    """Everything the test writes on any configured connection is rolled back after it."""
    pins = pinned()
    try:
        yield
    finally:
        _release_all(pins)


@pytest.fixture
async def ar_adb() -> AsyncIterator[None]:
    """``ar_db`` for an ``async def`` test: set up and rolled back on the test's event loop.

    An async fixture: run by anyio's pytest plugin for ``@pytest.mark.anyio``
    tests, or by pytest-asyncio in its auto mode (docs/testing.md for its strict mode).
    """
    pins = await apinned()
    try:
        yield
    finally:
        await aio.run(_release_all, pins)


@pytest.fixture(scope="session")
def ar_create_database() -> Iterator[Callable[..., str]]:
    """A function that creates a throwaway database and returns its URL; all are dropped at the end.

    ``ar_create_database('postgresql+psycopg2://u@host/postgres')`` creates
    ``test_<random>`` on that server; a SQLite URL gives a file in a temporary
    directory. ``name=`` chooses the database's name.
    """
    created: list[URL] = []
    directory = tempfile.mkdtemp(prefix="rhosocial_ar_test_")

    def create(server_url: str | URL, name: str | None = None) -> str:
        url = sa.make_url(server_url)
        name = name or f"test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        if url.get_backend_name() == "sqlite":
            url = url.set(database=os.path.join(directory, f"{name}.db"))
        else:
            url = url.set(database=name)
        dialects.create_database(url)
        created.append(url)
        return url.render_as_string(hide_password=False)

    yield create
    urls = {url.render_as_string(hide_password=False) for url in created}
    for connection in ConnectionManager.connections():   # close the sessions on them first
        if connection.engine.url.render_as_string(hide_password=False) in urls:
            connection.engine.dispose()
    for url in reversed(created):
        dialects.drop_database(url)
    if not os.listdir(directory):
        os.rmdir(directory)
