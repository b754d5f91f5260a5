"""The awaitable forms: the sync core, run inside SQLAlchemy's asyncio bridge.

    ConnectionManager.configure({'default': {'url': 'postgresql+asyncpg://u@db/app'}})
    ann = await User.acreate(name='ann')          # User.create(name='ann'), awaited
    async with User.atransaction():
        await User.where(name='ann').aupdate(name='Ann')

A connection configured with an async driver (or an ``AsyncEngine``) is
async: its Engine is the ``AsyncEngine``'s ``sync_engine``, whose adapted
driver may only wait on the event loop inside the bridge. Every ``a``-method
is ``await run(<its sync twin>, ...)``: the same code, hooks, routing and fast
path. A sync call on an async connection (or an awaitable on a sync one) is
refused before it sends anything, by ``check()``, with the call to use instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from types import FrameType
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .errors import ConfigurationError, ConnectionModeError
from .fastpath import bridge

__all__ = ["check", "checked_engine", "create_engine", "engine_of", "in_bridge", "iterate", "run", "sleep"]

R = TypeVar("R")
T = TypeVar("T")

# True while this task runs sync code inside the bridge; the bridge's greenlet shares
# the task's context, so the flag is set and reset around each call, in the greenlet
_bridged: ContextVar[bool] = ContextVar("rhosocial_ar_bridged", default=False)
in_bridge = _bridged.get


def _inside(fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
    token = _bridged.set(True)
    try:
        return fn(*args, **kwargs)
    finally:
        _bridged.reset(token)


async def run(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Await the sync ``fn(*args, **kwargs)``, whose statements may go to async connections."""
    return await bridge.spawn(_inside, fn, args, kwargs)


def sleep(seconds: float) -> None:
    """``time.sleep`` for sync code that may run in the bridge: there it awaits ``asyncio.sleep``,
    so a retry's wait inside ``await atransfer(...)`` does not stop the task's event loop."""
    if _bridged.get():
        bridge.sleep(seconds)
    else:
        time.sleep(seconds)


_END = object()


async def iterate(items: Iterator[T]) -> AsyncIterator[T]:
    """An async iterator over a sync one whose steps run statements (``abatch``)."""
    while True:
        item = await run(next, items, _END)
        if item is _END:
            return
        yield item


def engine_of(engine: Any) -> Engine | None:
    """The Engine behind ``engine`` (an ``AsyncEngine``'s ``sync_engine``), or None if it is neither."""
    if isinstance(engine, Engine):
        return engine
    sync_engine = getattr(engine, "sync_engine", None)
    try:
        from sqlalchemy.ext.asyncio import AsyncEngine
    except ImportError:    # no greenlet: no AsyncEngine can have been made either
        return None
    return sync_engine if isinstance(engine, AsyncEngine) else None


def create_engine(name: str, url: sa.URL, **options: Any) -> Engine:
    """A SQLAlchemy Engine for ``url``; the ``sync_engine`` of an ``AsyncEngine`` for an async driver."""
    if not url.get_dialect().is_async:
        return sa.create_engine(url, **options)
    try:
        import greenlet  # noqa: F401  (SQLAlchemy's asyncio bridge)
        from sqlalchemy.ext.asyncio import create_async_engine
    except ImportError as exc:
        raise ConfigurationError(
            f"connection {name!r}: the async driver {url.drivername!r} needs {exc.name}: "
            f"pip install 'rhosocial_ar[async]'"
        ) from None
    return create_async_engine(url, **options).sync_engine


def check(connection: Any) -> None:
    """Refuse a sync call on an async connection, or an awaitable on a sync one."""
    if connection.is_async is not _bridged.get():
        raise ConnectionModeError(_wrong_way(connection.name, connection.is_async, sys._getframe(1)))


def _wrong_way(name: str, is_async: bool, frame: FrameType | None) -> str:
    """What a call that used ``name`` the wrong way should have been: the outermost library call."""
    found: tuple[str, Any] | None = None
    while frame is not None:
        code = frame.f_code
        module = str(frame.f_globals.get("__name__"))
        if module.startswith("rhosocial_ar.") and code.co_argcount:
            target = frame.f_locals.get(code.co_varnames[0])
            if code.co_name == "__enter__":
                has_twin = hasattr(type(target), "__aenter__")
            elif code.co_name == "__call__":
                has_twin = _is_accessor(target)
            else:
                has_twin = hasattr(target, "a" + code.co_name)
            if has_twin:
                found = (code.co_name, target)
        frame = frame.f_back
    if found is None:
        right = ("the awaitable a-prefixed form (await User.afind(...)), or async with for a "
                 "transaction" if is_async else "the sync form, without await")
        return f"connection {name!r} is {'async' if is_async else 'sync'}: use {right} (docs/async.md)"
    op, target = found
    if op == "__call__":            # a relation's accessor: user.posts()
        owner = f"{type(target.record).__name__.lower()}.{target.relation.name}"
        if not is_async:
            return f"connection {name!r} is sync: call {owner}() without await (docs/async.md)"
        return (f"{owner} is not loaded and connection {name!r} is async: eager-load it with "
                f"with_('{target.relation.name}'), or await {owner}.aload() (docs/async.md)")
    if op == "__enter__":           # a Transaction block
        block = type(target).__name__
        if not is_async:
            return f"connection {name!r} is sync: use with {block}(...), not async with (docs/async.md)"
        return (f"connection {name!r} is async: use async with {block}(...) "
                f"or async with Model.atransaction() (docs/async.md)")
    owner = target.__name__ if isinstance(target, type) else type(target).__name__.lower()
    if not is_async:
        return f"connection {name!r} is sync: call {owner}.{op}(...) without await (docs/async.md)"
    return f"connection {name!r} is async: use await {owner}.a{op}(...) (docs/async.md)"


def _is_accessor(target: Any) -> bool:
    return hasattr(target, "relation") and hasattr(target, "record") and hasattr(target, "aload")


def checked_engine(connection: Any) -> Engine:
    """``connection.engine`` for a statement SQLAlchemy runs itself (DDL), after ``check()``."""
    check(connection)
    return connection.engine  # type: ignore[no-any-return]
