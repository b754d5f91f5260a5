"""Block state per context, or shared by every copy of a request's context.

    from rhosocial_ar import Transaction, request_scope

    with request_scope():                      # what RequestScopeMiddleware does per request
        tx = Transaction()
        copy_context().run(tx.__enter__)       # a framework runs a sync dependency in a copy
        ...                                    # every other copy of the context joins tx
        copy_context().run(tx.__exit__, None, None, None)

The ``using_connection()`` and ``Transaction()`` blocks of a thread or an
asyncio task live in ``ContextVar``s. Web frameworks run one request in
several copies of its context (a sync dependency in one worker thread, the
endpoint in another, the dependency's exit in a third), so a block entered in
one copy is lost to the others. Inside ``request_scope()`` the blocks live in
mappings that the copies share. Asyncio tasks the request starts itself keep
the blocks they open to themselves, and see the request's. Outside a request scope,
a block whose entry is the whole task of a worker thread (a ``def`` dependency's
setup) raises ``ContextNotShared`` before it opens: nothing would run in it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from inspect import CO_GENERATOR
from types import FrameType, MappingProxyType
from typing import Any, Generic, TypeVar

from .errors import ARError, ContextNotShared

__all__ = ["ContextMap", "request_scope"]

K = TypeVar("K")
V = TypeVar("V")

_EMPTY: Mapping[Any, Any] = MappingProxyType({})
_MAPS: list[ContextMap[Any, Any]] = []

# Frames that only open a block and return, never holding it open: any __enter__ (ours,
# contextlib's, a user's), ExitStack.enter_context, and our own steps in between
_ENTERING = frozenset({"__enter__", "enter_context"})
_OWN_ENTERING = frozenset({"bind", "check_bindable"})   # transaction.py, between __enter__ and put()
# The loops of worker threads that run each task as one call, in a copy of the submitter's
# context (anyio's, under Starlette's and FastAPI's run_in_threadpool; trio's; concurrent.
# futures', under asyncio.to_thread and run_in_executor), or a bare Thread's target
_WORKER_LOOPS = frozenset({
    ("anyio._backends._asyncio", "run"),
    ("trio._threads", "worker_fn"),
    ("concurrent.futures.thread", "run"),
    ("threading", "run"),
})

NOT_SHARED_HINT = (
    "a using_connection() or Transaction() block was closed in another context than the one "
    "it was entered in (a web framework runs sync dependencies in worker threads with copies "
    "of the request's context); wrap each request in rhosocial_ar.request_scope(), e.g. with "
    "app.add_middleware(rhosocial_ar.RequestScopeMiddleware) (docs/web-frameworks.md)"
)


class _Scope:
    """One request: the asyncio task it runs in (None outside an event loop)."""

    __slots__ = ("task",)

    def __init__(self, task: object | None) -> None:
        self.task = task


class _Shared(Mapping[K, V]):
    """A request scope's current mapping: the same object in every copy of its context."""

    __slots__ = ("data", "scope")

    def __init__(self, data: dict[K, V], scope: _Scope) -> None:
        self.data = data
        self.scope = scope

    def __getitem__(self, key: K) -> V:
        return self.data[key]

    def get(self, key: K, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[K]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


class _Overlay(Mapping[K, V]):
    """The blocks a task started inside a request opened itself, over the request's."""

    __slots__ = ("own", "shared")

    def __init__(self, own: dict[K, V], shared: _Shared[K, V]) -> None:
        self.own = own
        self.shared = shared

    def __getitem__(self, key: K) -> V:
        if key in self.own:
            return self.own[key]
        return self.shared.data[key]

    def get(self, key: K, default: Any = None) -> Any:
        if key in self.own:
            return self.own[key]
        return self.shared.data.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.own or key in self.shared.data

    def __iter__(self) -> Iterator[K]:
        return iter({**self.shared.data, **self.own})

    def __len__(self) -> int:
        return len({**self.shared.data, **self.own})


class _SharedToken:
    """What ``ContextMap.reset`` needs to undo a ``put`` into a request scope."""

    __slots__ = ("shared", "key", "before", "after")

    def __init__(self, shared: _Shared[Any, Any], key: Any, before: dict[Any, Any],
                 after: dict[Any, Any]) -> None:
        self.shared, self.key, self.before, self.after = shared, key, before, after


def _entry_is_a_whole_task(frame: FrameType | None) -> bool:
    """Whether the block entered at ``frame`` is all that a worker thread's task does.

    Then the context it changes is a copy that dies with the task: nothing would run
    in the block. Python cannot say whether a context is such a copy, so this walks
    out past the frames that only enter (``__enter__``, and a generator one steps to
    its first ``yield``, as FastAPI does with a ``def`` yield-dependency) to the frame
    that holds the block open, and checks whether that is a worker thread's loop. A
    ``def`` endpoint that opens a block is that frame itself, and keeps working.
    """
    while frame is not None and _only_enters(frame):
        frame = frame.f_back
    return frame is not None and (frame.f_globals.get("__name__"), frame.f_code.co_name) in _WORKER_LOOPS


def _only_enters(frame: FrameType) -> bool:
    """Whether ``frame`` opens a block and returns, leaving a frame further out to hold it."""
    name = frame.f_code.co_name
    if name in _ENTERING:
        return True
    if name in _OWN_ENTERING:
        return str(frame.f_globals.get("__name__")).startswith("rhosocial_ar.")
    back = frame.f_back   # a generator that an __enter__ steps to its first yield
    is_generator = frame.f_code.co_flags & CO_GENERATOR
    return bool(is_generator) and back is not None and back.f_code.co_name in _ENTERING


def _lost_block(key: object) -> str:
    # the keys of the balanced maps: a model class (using_connection), a connection name
    block = (f"a using_connection() block for {key.__name__}" if isinstance(key, type)
             else f"a transaction on {key!r}")
    return (
        f"{block} was entered as the whole task of a worker thread, in a copy of the request's "
        f"context that is thrown away when the task returns (a web framework runs a plain `def` "
        f"yield-dependency's setup so): the endpoint would run outside the block, so it was not "
        f"opened. Install the middleware, app.add_middleware(rhosocial_ar.RequestScopeMiddleware) "
        f"(or wrap each request in rhosocial_ar.request_scope()), or make the dependency "
        f"`async def` (docs/web-frameworks.md)"
    )


def _current_task() -> object | None:
    """The running asyncio task; None in a thread without a running event loop."""
    asyncio = sys.modules.get("asyncio")   # not imported: no loop can be running
    if asyncio is None:
        return None
    try:
        return asyncio.current_task()
    except RuntimeError:   # no running loop in this thread: a worker thread
        return None


class ContextMap(Generic[K, V]):
    """An immutable mapping per context (a ``ContextVar``) that a request scope can share.

    ``get()`` costs one ``ContextVar.get()``; ``put()`` and ``reset()`` pair up like
    ``ContextVar.set()`` and ``reset()``.
    """

    def __init__(self, name: str, *, balanced: bool = True) -> None:
        self.name = name
        self.var: ContextVar[Mapping[K, V]] = ContextVar(name, default=_EMPTY)
        self.get = self.var.get   # no call frame of our own: it runs for every statement
        # every put is undone by a reset: a request scope ends with what it began with
        self.balanced = balanced
        _MAPS.append(self)

    def check_put(self, key: K) -> None:
        """Raise ``ContextNotShared`` if a ``put()`` of a block here would be lost at once.

        ``put()`` checks as well; a block with work to do before its ``put()`` calls this first.
        """
        if (self.balanced and type(self.var.get()) is not _Shared
                and _entry_is_a_whole_task(sys._getframe(1))):
            raise ContextNotShared(_lost_block(key))

    def put(self, key: K, value: V) -> Any:
        """Map ``key`` to ``value`` here; returns the token that ``reset()`` takes."""
        current = self.var.get()
        kind = type(current)
        if kind is _Shared:
            shared: _Shared[K, V] = current  # type: ignore[assignment]
            task = _current_task()
            # the request's own line of work: its task, or a worker thread it waits for
            if task is None or task is shared.scope.task:
                before = shared.data
                after = shared.data = {**before, key: value}
                return _SharedToken(shared, key, before, after)
            return self.var.set(_Overlay({key: value}, shared))   # a task the request started
        if self.balanced and _entry_is_a_whole_task(sys._getframe(1)):
            raise ContextNotShared(_lost_block(key))
        if kind is _Overlay:
            overlay: _Overlay[K, V] = current  # type: ignore[assignment]
            return self.var.set(_Overlay({**overlay.own, key: value}, overlay.shared))
        return self.var.set({**current, key: value})

    def reset(self, token: Any) -> None:
        """Undo the ``put()`` that returned ``token``."""
        if type(token) is _SharedToken:
            _reset_shared(token)
            return
        try:
            self.var.reset(token)
        except ValueError as exc:   # a token of another context: the block cannot be closed here
            raise ContextNotShared(NOT_SHARED_HINT) from exc


def _reset_shared(token: _SharedToken) -> None:
    shared, key = token.shared, token.key
    data = shared.data
    if data is token.after:                  # the innermost block: the usual case
        shared.data = token.before
        return
    if key in data and data[key] is not token.after[key]:
        raise ARError(
            f"blocks of one request scope closed out of order: another block on {key!r}, "
            f"entered after this one, is still open (blocks run at once in one request?)"
        )
    data = dict(data)   # other keys changed since: put back only this one
    if key in token.before:
        data[key] = token.before[key]
    else:
        data.pop(key, None)
    shared.data = data


def in_request_scope() -> bool:
    return bool(_MAPS) and type(_MAPS[0].var.get()) in (_Shared, _Overlay)


@contextmanager
def request_scope() -> Iterator[None]:
    """Share the blocks entered inside with every copy of this context made inside.

    Use one per web request (``RequestScopeMiddleware`` does). Blocks open when
    it starts stay visible; nested, it is the outer scope that counts.
    """
    if in_request_scope():
        yield
        return
    scope = _Scope(_current_task())
    entered: list[tuple[ContextMap[Any, Any], _Shared[Any, Any], Token[Any]]] = []
    for context_map in _MAPS:
        start = context_map.var.get()
        shared = _Shared(dict(start), scope)
        entered.append((context_map, shared, context_map.var.set(shared)))
    initial = {id(shared): shared.data for _, shared, _ in entered}

    def still_open(shared: _Shared[Any, Any]) -> bool:
        start = initial[id(shared)]
        return shared.data is not start and shared.data != start

    try:
        yield
    finally:
        for context_map, _, token in reversed(entered):
            context_map.var.reset(token)
    left_open = [m.name for m, shared, _ in entered
                 if m.balanced and still_open(shared)]
    if left_open:
        raise ARError(
            f"a request scope ended with blocks still open ({', '.join(left_open)}): "
            f"a using_connection() or Transaction() block entered in it was never closed"
        )
