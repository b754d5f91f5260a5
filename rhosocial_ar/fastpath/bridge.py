"""The fence's asyncio side: what async connections rely on that SQLAlchemy and aiosqlite do not promise.

    result = await bridge.spawn(User.find, 1)     # sync code, run where it may await the driver
    bridge.check()                                # [] when every name below exists

Async connections run the library's sync code inside SQLAlchemy's asyncio
bridge: a greenlet in which the async driver's adapted DB-API connection
may wait on the event loop. This module is part of the fence
(``internals.py``); it relies on:

SQLAlchemy
  sqlalchemy.util.greenlet_spawn          runs a sync function in that greenlet; the
                                          public ``AsyncSession.run_sync`` does the same
                                          with a session we never use (the fallback)
  __sqlalchemy_greenlet_provider__        how await_only knows a bridge greenlet: spawn() keeps
                                          its greenlets for the next call (greenlets.py);
                                          without the mark, greenlet_spawn as before
  sqlalchemy.util.await_only              awaits a coroutine from inside the greenlet (the
                                          driver's own calls use it); ``sleep`` awaits
                                          ``asyncio.sleep`` with it, so a wait in sync code
                                          lets the event loop run; without it, time.sleep;
                                          ``concurrently`` awaits one task per call with
                                          it (a sharded query's shards); without it, one
                                          call after another
  sqlalchemy.dialects.postgresql.asyncpg.AsyncAdapt_asyncpg_connection
                                          its ``autocommit`` switch and ``isolation_level``:
                                          a read outside a transaction runs in autocommit,
                                          sparing asyncpg's BEGIN and ROLLBACK round trips
                                          (``autocommit_read``), and so does a create that
                                          is one INSERT (``autocommit_write``); without them
                                          both send BEGIN and COMMIT/ROLLBACK
SQLAlchemy's pool, aiomysql, asyncpg and asyncio (``close_orphans``: a sync ``reset()``
after the event loop has closed, ``ar_adb`` in the next test's loop)
  QueuePool._pool.get_nowait(), .put_nowait()   the idle connections of a pool
  aiomysql.Connection._loop, ._writer, ._reader  a connection whose loop is closed would
  asyncpg.Connection._loop, ._transport, ._aborted  close its transport through that loop
                                          when collected ("Event loop is closed") or warn
  asyncio _SelectorTransport._sock, ._closing  the socket, closed here instead; without these
                                          the connections are left as before
aiosqlite (the SQLite collation of decimals stored as text, ``dialects.py``)
  AdaptedConnection.driver_connection     public: the aiosqlite Connection
  aiosqlite.Connection._execute, ._conn   its worker thread, and the sqlite3 connection
                                          there; without them decimals order as text,
                                          with one warning
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from . import greenlets, guard

__all__ = ["autocommit_read", "autocommit_write", "check", "concurrently", "sleep", "sqlite_collation",
           "spawn"]

log = logging.getLogger("rhosocial_ar")
R = TypeVar("R")

_greenlet_spawn: Callable[..., Any] | None
try:
    from sqlalchemy.util import greenlet_spawn as _greenlet_spawn
except ImportError:    # moved or gone: the public path below
    _greenlet_spawn = None

_await_only: Callable[..., Any] | None
try:
    from sqlalchemy.util import await_only as _await_only
except ImportError:    # gone: waits in the bridge block the event loop, as time.sleep does
    _await_only = None

_warned: set[str] = set()
_reuse = greenlets.usable()      # bridge greenlets kept between calls (greenlets.py)


async def spawn(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Await ``fn(*args, **kwargs)`` run in SQLAlchemy's asyncio bridge.

    The greenlet shares the calling task's context, so ``ContextVar`` blocks
    opened inside stay open for the task after it returns.
    """
    if _reuse:
        return await greenlets.spawn(fn, *args, **kwargs)
    if _greenlet_spawn is not None:
        return await _greenlet_spawn(fn, *args, **kwargs)   # type: ignore[no-any-return]
    from sqlalchemy.ext.asyncio import AsyncSession

    # a session that is never used: no connection is checked out for it
    return await AsyncSession().run_sync(lambda _session: fn(*args, **kwargs))


def sleep(seconds: float) -> None:
    """Wait in sync code run in the bridge: ``asyncio.sleep``, so other tasks run meanwhile.

    Outside the greenlet of ``spawn()`` (a thread started from it), ``time.sleep``.
    """
    if _await_only is not None:
        from sqlalchemy.exc import MissingGreenlet

        try:
            _await_only(asyncio.sleep(seconds))
            return
        except MissingGreenlet:    # not in the bridge's greenlet: the coroutine was closed
            pass
    time.sleep(seconds)


def concurrently(calls: Sequence[Callable[[], Any]]) -> list[tuple[bool, Any]] | None:
    """Run ``calls`` at once from sync code in the bridge; the outcomes in order, or None.

    Each call runs in a bridge greenlet of its own asyncio task, so their
    drivers' waits overlap on the event loop; a task starts in a copy of the
    caller's context, as a thread's ``copy_context()`` would. The caller waits
    until every call has stopped. An outcome is ``(True, result)`` or
    ``(False, exception)``. None outside the bridge's greenlet, or without
    ``await_only``: then the caller runs them one after another.
    """
    if _await_only is None:
        return None
    from sqlalchemy.exc import MissingGreenlet

    async def every_call() -> list[Any]:
        return await asyncio.gather(*(spawn(call) for call in calls), return_exceptions=True)

    try:
        answers = _await_only(every_call())
    except MissingGreenlet:     # not in the bridge: await_only closed the coroutine unstarted
        return None
    return [(not isinstance(answer, BaseException), answer) for answer in answers]


_ASYNCPG_SWITCH = ("autocommit", "isolation_level", "_isolation_setting", "_transaction")
_asyncpg: list[Any] = []      # [the adapter class, or None without its switch]: found on first use


def _asyncpg_adapter() -> Any:
    if not _asyncpg:
        cls: Any
        try:
            from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection as cls
        except ImportError:    # no asyncpg dialect here: reads send BEGIN, as before
            cls = None
        # its __slots__ and property: on the class, checked once
        usable = cls is not None and all(hasattr(cls, name) for name in _ASYNCPG_SWITCH)
        _asyncpg.append(cls if usable else None)
    return _asyncpg[0]


def autocommit_read(sa_conn: Any, on: bool) -> None:
    """Run the statements of one read outside a transaction in autocommit (asyncpg only).

    The adapter would otherwise open a transaction (a BEGIN round trip) for the
    read and roll it back on return to the pool (another). One statement in
    autocommit reads what it would in its own READ COMMITTED transaction, so
    only connections at that level (or the server default) are switched.
    ``sa_conn`` is a pooled SQLAlchemy Connection with no transaction open.
    """
    _switch(sa_conn, on)


def autocommit_write(sa_conn: Any, on: bool) -> bool:
    """Run a transaction that will send exactly one write statement in autocommit (asyncpg only).

    One statement in autocommit is its own transaction, as atomic as inside
    BEGIN and COMMIT, which become no-ops here (the adapter sends them only
    around a transaction it began). ``sa_conn``: the SQLAlchemy Connection of an
    outermost block just begun, nothing sent yet. True when it was switched on.
    """
    if on and guard.watched(sa_conn):     # a listener may send statements of its own
        return False
    return _switch(sa_conn, on)


def _switch(sa_conn: Any, on: bool) -> bool:
    adapter: Any = sa_conn.connection.dbapi_connection
    if type(adapter) is not _asyncpg_adapter():
        return False
    if on:
        if adapter.isolation_level in (None, "read_committed") and adapter._transaction is None:
            adapter.autocommit = True
            return True
    elif adapter.isolation_level == "autocommit" and adapter._isolation_setting != "autocommit":
        adapter.autocommit = False      # back to the connection's own level
    return False


def close_orphans(engine: Any, loop: Any = None) -> int:
    """Close the sockets of ``engine``'s idle connections whose event loop has closed (or, given
    ``loop``, is another loop); they leave the pool. Returns how many.

    asyncpg's and aiomysql's connections belong to their loop. Dropped after it
    has closed (a sync ``reset()``), aiomysql's ``__del__`` would close the
    transport through it and print "Exception ignored ... Event loop is
    closed", asyncpg's warn; used on another loop (the next test's), they fail.
    """
    queue: Any = getattr(engine.pool, "_pool", None)
    if not hasattr(queue, "get_nowait"):   # another pool class, or moved: left as they are
        return 0
    kept, closed = [], 0
    while True:
        try:
            record = queue.get_nowait()
        except Exception:                        # Empty
            break
        driver: Any = getattr(record.dbapi_connection, "driver_connection", None)
        own = getattr(driver, "_loop", None)
        if own is None or not (own.is_closed() or (loop is not None and own is not loop)) \
                or not _close_socket(driver):
            kept.append(record)
            continue
        closed += 1
    for record in kept:
        queue.put_nowait(record)
    return closed


def _close_socket(driver: Any) -> bool:
    """Close an aiomysql or asyncpg connection's socket without its loop; False for another driver."""
    transport: Any
    if hasattr(driver, "_writer"):               # aiomysql
        writer = driver._writer
        transport = writer.transport if writer is not None else None
    elif hasattr(driver, "_transport") and hasattr(driver, "_aborted"):   # asyncpg
        transport = driver._transport
    else:
        return False
    sock = getattr(transport, "_sock", None)
    if sock is None:
        return False
    if hasattr(driver, "_writer"):
        driver._writer = driver._reader = None   # nothing left for its __del__ to close
    else:
        driver._aborted = True                   # is_closed(): its __del__ neither warns nor aborts
    transport._sock, transport._closing = None, True   # nor for the transport's, its writer's
    sock.close()                                 # the server ends the session
    return True


def sqlite_collation(dbapi_connection: Any, name: str, compare: Callable[[str, str], int]) -> None:
    """Add a collation to an aiosqlite connection, in aiosqlite's own thread."""
    try:
        driver = dbapi_connection.driver_connection
        execute, raw = driver._execute, driver._conn
    except AttributeError:
        if "aiosqlite" not in _warned:
            _warned.add("aiosqlite")
            log.warning("rhosocial_ar: this aiosqlite has no Connection._execute/_conn: "
                        "decimals stored as text sort as text on aiosqlite connections")
        return
    # inside the bridge (every connect is): wait on aiosqlite's worker thread
    from sqlalchemy.util import await_only

    await_only(execute(raw.create_collation, name, compare))


def check() -> list[str]:
    """What is missing of the names above, as readable problems ([] when all are there)."""
    problems: list[str] = []
    if _greenlet_spawn is None:
        problems.append("sqlalchemy.util.greenlet_spawn is gone (AsyncSession.run_sync is used)")
    if not _reuse:
        problems.append("SQLAlchemy's bridge greenlets are no longer marked "
                        "__sqlalchemy_greenlet_provider__ (a new greenlet per call)")
    if _await_only is None:
        problems.append("sqlalchemy.util.await_only is gone (waits in the bridge block the loop)")
    if _asyncpg_adapter() is None:
        problems.append("AsyncAdapt_asyncpg_connection lacks one of "
                        f"{', '.join(_ASYNCPG_SWITCH)} (reads on asyncpg send BEGIN)")
    try:
        import aiosqlite
    except ImportError:
        return problems
    for attr in ("_execute",):
        if not hasattr(aiosqlite.Connection, attr):
            problems.append(f"aiosqlite.Connection.{attr} is gone")
    return problems
