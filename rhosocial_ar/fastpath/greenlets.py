"""Bridge greenlets kept for the next call: SQLAlchemy's ``greenlet_spawn``, without a new greenlet each time.

    result = await greenlets.spawn(fn, *args)     # fn may call await_only(), as in greenlet_spawn

``greenlet_spawn`` starts a new greenlet per call; each new greenlet also
gets a fresh frame stack from CPython (an mmap of 16 KiB, its pages faulted
in, unmapped when the greenlet dies), about 8 µs a call in all. Here a
finished greenlet waits, per thread, for the next call. What the bridge
needs is SQLAlchemy's: ``await_only`` switches to the parent with a
coroutine when the current greenlet carries ``__sqlalchemy_greenlet_provider__``
(internal, probed by ``usable()``; bridge.py falls back to ``greenlet_spawn``).
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["spawn", "usable"]

R = TypeVar("R")
_KEEP = 64      # idle greenlets per thread: beyond, they end as greenlet_spawn's do


class _Done:
    """What a worker hands its parent when the call has returned or raised."""

    __slots__ = ("ok", "value")

    def __init__(self, ok: bool, value: Any) -> None:
        self.ok, self.value = ok, value


_FINISHED = object()     # what a worker hands its parent when the call has ended
_Worker: Any = None
_idle = threading.local()


def usable() -> bool:
    """Whether greenlet is there and SQLAlchemy still marks its bridge greenlets the same way."""
    global _Worker
    if _Worker is not None:
        return True
    try:
        from greenlet import greenlet
        from sqlalchemy.util import concurrency
    except ImportError:
        return False
    shim = getattr(concurrency, "_concurrency_shim", None)
    marked = getattr(getattr(shim, "_AsyncIoGreenlet", None), "__sqlalchemy_greenlet_provider__", None)
    if marked is not True:       # SQLAlchemy 2.0's module-level class, if not the shim's
        legacy = getattr(concurrency, "_AsyncIoGreenlet", None)
        if legacy is None:       # 2.0.x keeps it in its py3k module
            try:
                legacy_module: Any = importlib.import_module("sqlalchemy.util._concurrency_py3k")
            except ImportError:
                legacy_module = None
            legacy = getattr(legacy_module, "_AsyncIoGreenlet", None)
        marked = getattr(legacy, "__sqlalchemy_greenlet_provider__", None)
    if marked is not True:
        return False

    class Worker(greenlet):  # type: ignore[misc]
        __sqlalchemy_greenlet_provider__ = True

        def __init__(self) -> None:
            greenlet.__init__(self, self._serve)

        def _serve(self, fn: Callable[..., Any], args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> None:
            while True:
                try:
                    self.done = _Done(True, fn(*args, **kwargs))
                except BaseException as exc:  # handed to the caller, raised there
                    self.done = _Done(False, exc)
                    del exc
                fn = args = kwargs = None  # type: ignore[assignment]  # nothing kept while idle
                fn, args, kwargs = self.parent.switch(_FINISHED)

    _Worker = Worker
    return True


async def spawn(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Await ``fn(*args, **kwargs)`` run in a bridge greenlet sharing the task's context."""
    from greenlet import getcurrent

    idle = _idle.__dict__.setdefault("workers", [])
    worker = idle.pop() if idle else _Worker()
    current = getcurrent()
    worker.parent = current
    worker.gr_context = current.gr_context      # ContextVar blocks stay the task's
    result = worker.switch(fn, args, kwargs)
    while result is not _FINISHED:
        try:
            value = await result                # a coroutine handed over by await_only
        except BaseException:
            result = worker.throw(*sys.exc_info())
        else:
            result = worker.switch(value)
    done, worker.done = worker.done, None
    if len(idle) < _KEEP:
        idle.append(worker)
    if done.ok:
        return done.value  # type: ignore[no-any-return]
    raise done.value
