"""Local transactions: one per connection per context, nested blocks as savepoints.

    with User.transaction():                  # BEGIN on User's connection
        User.create(username='ann')
        with Transaction(get_connection()):   # SAVEPOINT
            ...
    # COMMIT; then every saved record's after_commit() runs

While a block is open, every operation any model routes to that connection
runs inside it. The open transactions live in a ``ContextVar``, so each
thread and each asyncio task has its own; inside ``request_scope()`` the
copies of a web request's context share them (scope.py).
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, overload

import sqlalchemy as sa

from . import aio
from .connections import Connection, get_connection
from .dialects import READ_ONLY_OPTION
from .errors import ARError, ConfigurationError, ReadOnlyError, SavepointError
from .fastpath import bridge
from .savepoints import Savepoints
from .scope import ContextMap

if TYPE_CHECKING:
    from .twophase import TwoPhaseTransaction

__all__ = ["Transaction", "atomic", "current_frame"]

log = logging.getLogger("rhosocial_ar")
F = TypeVar("F", bound=Callable[..., Any])
_Tx = TypeVar("_Tx", bound="Transaction")

_ISOLATION_LEVELS = {
    "SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED", "READ UNCOMMITTED", "AUTOCOMMIT",
}


class Frame:
    """One open transaction or savepoint on one connection."""

    __slots__ = ("connection", "sa_conn", "sa_tx", "parent", "records", "wrote")

    def __init__(self, connection: Connection, sa_conn: sa.Connection, sa_tx: Any,
                 parent: Frame | None) -> None:
        self.connection = connection
        self.sa_conn = sa_conn
        self.sa_tx = sa_tx
        self.parent = parent
        # (record, its state before the write): commit hooks wait for us, and a
        # rollback puts the state back so the record does not claim a lost row
        self.records: list[tuple[Any, Any]] = []
        self.wrote = False

    def enlist(self, record: Any, state_before: Any) -> None:
        self.records.append((record, state_before))


_frames: ContextMap[str, Frame] = ContextMap("rhosocial_ar_frames")

# when this context last committed a write, per connection (for read-your-writes)
_last_writes: ContextMap[str, float] = ContextMap("rhosocial_ar_last_writes", balanced=False)


def last_write(connection_name: str) -> float | None:
    """``time.monotonic()`` of this context's last committed write on a connection."""
    return _last_writes.get().get(connection_name)


def _note_write(connection_name: str) -> None:
    _last_writes.put(connection_name, time.monotonic())


def current_frame(connection_name: str) -> Frame | None:
    """The innermost open transaction on a connection in this context, if any.

    ``ConnectionModeError`` when it is an async connection's and this is sync code, or the reverse.
    """
    frame = _frames.get().get(connection_name)
    if frame is not None and frame.connection.is_async is not aio.in_bridge():
        aio.check(frame.connection)
    return frame


def _unique(entries: list[tuple[Any, Any]], hook: str) -> list[Any]:
    """Each record once, of the models that override ``hook`` (the others' is empty)."""
    seen: set[int] = set()
    unique = []
    for record, _ in entries:
        if hook in record.__ar_meta__.hooks and id(record) not in seen:
            seen.add(id(record))
            unique.append(record)
    return unique


def _rolled_back(entries: list[tuple[Any, Any]]) -> None:
    # newest first, so a record written twice ends with its oldest state
    for record, state_before in reversed(entries):
        record._ar_restore(state_before)
    _run_hooks(entries, "after_rollback")


def _run_hooks(entries: list[tuple[Any, Any]], hook: str) -> None:
    """Run a commit hook on every record; the first error is raised after all ran."""
    first_error: BaseException | None = None
    for record in _unique(entries, hook):
        try:
            getattr(record, hook)()
        except Exception as exc:  # the transaction has ended; finish the others first
            log.exception("%s hook of %r failed", hook, record)
            first_error = first_error or exc
    if first_error is not None:
        raise first_error


def check_bindable(connection_name: str) -> None:
    """Raise ``ContextNotShared`` now if a block opened here would be lost (scope.py).

    For a block to call before it sends anything; ``bind()`` checks again.
    """
    _frames.check_put(connection_name)


def bind(frame: Frame) -> Any:
    """Make ``frame`` the open transaction of its connection in this context.

    Returns the token ``unbind()`` takes (a ``contextvars.Token``, or a request scope's).
    """
    return _frames.put(frame.connection.name, frame)


def unbind(token: Any) -> None:
    """Undo ``bind()``; ``ARError`` when this context cannot (a copy without the frame)."""
    _frames.reset(token)


def ended(frame: Frame, committed: bool) -> None:
    """Bookkeeping once a transaction or savepoint has ended: hooks, restores."""
    if not committed:
        _rolled_back(frame.records)
    elif frame.parent is not None:
        frame.parent.records.extend(frame.records)   # only the outermost commit is real
        frame.parent.wrote = frame.parent.wrote or frame.wrote
    else:
        if frame.wrote:
            _note_write(frame.connection.name)
        _run_hooks(frame.records, "after_commit")


def _end(frame: Frame, commit: bool) -> None:
    """Commit or roll back a block's transaction or savepoint, then the bookkeeping."""
    try:
        if commit:
            frame.sa_tx.commit()
        else:
            frame.sa_tx.rollback()
    except BaseException:
        # a failed COMMIT (e.g. a deferred constraint) rolled everything back
        if frame.parent is None:
            frame.sa_conn.close()
        ended(frame, committed=False)
        raise
    if frame.parent is None:
        frame.sa_conn.close()
    ended(frame, committed=commit)


class _Settings:
    """What a transaction opens with: its connection and isolation level, checked.

    A base of ``Transaction`` so that type checkers read ``Transaction(...)``
    from its ``__new__`` (with ``__init__`` in the same class they read that).
    """

    def __init__(self, connection: Connection | str | None = None, *,
                 isolation_level: str | None = None, two_phase: bool = False) -> None:
        if connection is None or isinstance(connection, str):
            connection = get_connection(connection or "default")
        if not isinstance(connection, Connection):
            raise ConfigurationError(
                f"Transaction() takes a Connection or a connection name, not {connection!r}"
            )
        if isolation_level is not None:
            isolation_level = isolation_level.upper().replace("_", " ")
            if isolation_level not in _ISOLATION_LEVELS:
                raise ConfigurationError(
                    f"unknown isolation level {isolation_level!r}; "
                    f"expected one of {sorted(_ISOLATION_LEVELS)}"
                )
        self.connection = connection
        self.isolation_level = isolation_level
        self._frame: Frame | None = None
        self._token: Any = None


class Transaction(_Settings):
    """A transaction on one connection; usable as a context manager or decorator.

    Nested on the same connection it becomes a savepoint. An exception rolls
    back and propagates. ``two_phase=True`` gives a transaction that a block
    only scopes: it ends with ``prepare()`` and ``commit()`` or ``rollback()``.
    """

    # what Transaction(..., two_phase=True) builds: the subclass declared with
    # `class ...(Transaction, two_phase=True)` (twophase.py), which this module does not import
    _two_phase_class: ClassVar[type[Transaction] | None] = None

    def __init_subclass__(cls, *, two_phase: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if two_phase:
            Transaction._two_phase_class = cls

    # for type checkers: Transaction(conn, two_phase=True) is a TwoPhaseTransaction
    @overload
    def __new__(cls, connection: Connection | str | None = None, *,
                isolation_level: str | None = None, two_phase: Literal[True]) -> TwoPhaseTransaction: ...
    @overload
    def __new__(cls: type[_Tx], connection: Connection | str | None = None, *,
                isolation_level: str | None = None, two_phase: Literal[False] = False) -> _Tx: ...
    @overload
    def __new__(cls, connection: Connection | str | None = None, *,
                isolation_level: str | None = None, two_phase: bool) -> Transaction: ...
    def __new__(cls, *args: Any, two_phase: bool = False, **kwargs: Any) -> Transaction:
        if two_phase and cls is Transaction:
            two_phase_class = Transaction._two_phase_class
            assert two_phase_class is not None, "importing rhosocial_ar imports twophase.py"
            return super().__new__(two_phase_class)
        return super().__new__(cls)

    def __enter__(self) -> Transaction:
        if self._frame is not None:
            raise ARError("this Transaction is already open; create a new one to nest")
        name = self.connection.name
        check_bindable(name)   # before any statement: a block lost at once (scope.py)
        parent = current_frame(name)
        if parent is None:
            sa_conn = self.connection.connect()
            try:
                if self.isolation_level:
                    sa_conn.execution_options(isolation_level=self.isolation_level)
                sa_tx: Any = sa_conn.begin()
            except BaseException:
                sa_conn.close()
                raise
        else:
            if self.isolation_level:
                raise ConfigurationError(
                    "isolation_level can only be set on the outermost transaction"
                )
            sa_conn = parent.sa_conn
            sa_tx = sa_conn.begin_nested()
        self._frame = Frame(self.connection, sa_conn, sa_tx, parent)
        self._token = bind(self._frame)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        frame, token = self._frame, self._token
        assert frame is not None and token is not None
        self._frame = self._token = None
        try:
            unbind(token)
        except ARError:
            # closed in a context that never saw the block: the work meant for it ran
            # elsewhere, so none of the block is committed
            _end(frame, commit=False)
            raise
        _end(frame, commit=exc_type is None)

    async def __aenter__(self) -> Transaction:
        """``async with Transaction(conn):`` the same block, on an async connection."""
        return await aio.run(self.__enter__)

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await aio.run(self.__exit__, exc_type, exc, tb)

    async def asavepoint(self, name: str) -> str:
        return await aio.run(self.savepoint, name)

    async def arollback_to(self, name: str) -> None:
        await aio.run(self.rollback_to, name)

    async def arelease(self, name: str) -> None:
        await aio.run(self.release, name)

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                async with Transaction(self.connection, isolation_level=self.isolation_level):
                    return await func(*args, **kwargs)

            return awrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with Transaction(self.connection, isolation_level=self.isolation_level):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def savepoint(self, name: str) -> str:
        """Set a savepoint called ``name`` in this open block; returns the name."""
        return self._named_savepoints("savepoint").create(name)

    def rollback_to(self, name: str) -> None:
        """Undo the block's work since savepoint ``name`` (kept; later ones are dropped)."""
        self._named_savepoints("rollback_to").rollback_to(name, _rolled_back)

    def release(self, name: str) -> None:
        """Drop savepoint ``name`` and those set after it, keeping their work."""
        self._named_savepoints("release").release(name)

    def _named_savepoints(self, action: str) -> Savepoints:
        frame = self._frame
        if frame is None:
            raise SavepointError(f"{action}(): the transaction is not open")
        if current_frame(frame.connection.name) is not frame:
            raise SavepointError(f"{action}(): a block nested in this one is open; "
                                 f"use that block's savepoints until it ends")
        named: Savepoints | None = getattr(self, "_savepoints", None)
        if named is None or named.frame is not frame:   # a new block: no names yet
            named = self._savepoints = Savepoints(frame)
        return named

    @property
    def sa_connection(self) -> sa.Connection:
        """The SQLAlchemy Connection of the open block (for Core statements)."""
        if self._frame is None:
            raise ARError("the transaction is not open")
        return self._frame.sa_conn

    def detach(self) -> Frame:
        """Close the open block but not its transaction, and hand that over.

        The caller ends the returned frame itself: commits or rolls back its
        ``sa_tx``, closes its ``sa_conn``, then calls ``ended()``. The two-phase
        coordinator does, to commit its last participant together with its decision.
        """
        frame, token = self._frame, self._token
        if frame is None or token is None:
            raise ARError("the transaction is not open")
        self._frame = self._token = None
        unbind(token)
        return frame

    def __repr__(self) -> str:
        state = "open" if self._frame else "closed"
        return f"<Transaction {self.connection.name!r} {state}>"


@contextmanager
def atomic(connection: Connection, one_statement: bool = False) -> Iterator[Frame]:
    """Join the open transaction on ``connection``, or run in a new one.

    ``one_statement``: the caller sends exactly one statement and runs no hook
    inside; a new transaction may then be that statement alone (bridge.py).
    """
    if connection.read_only:
        raise ReadOnlyError(f"connection {connection.name!r} is read-only; nothing was written")
    frame = current_frame(connection.name)
    if frame is not None:
        frame.wrote = True
        yield frame
        return
    with Transaction(connection) as tx:
        frame = tx._frame
        assert frame is not None
        frame.wrote = True
        if not (one_statement and connection.is_async and bridge.autocommit_write(frame.sa_conn, True)):
            yield frame
            return
        try:
            yield frame
        finally:     # before the COMMIT (a no-op now) and the return to the pool
            if not frame.sa_conn.invalidated:
                bridge.autocommit_write(frame.sa_conn, False)


class reading:  # noqa: N801 - a context manager used like a function
    """A SQLAlchemy Connection for a read: the open transaction's, or a pooled one.

    A class, not a generator: it runs for every read.
    """

    __slots__ = ("connection", "_pooled")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._pooled: sa.Connection | None = None

    def __enter__(self) -> sa.Connection:
        frame = current_frame(self.connection.name)
        if frame is not None:
            return frame.sa_conn
        self._pooled = self.connection.connect()
        self._pooled.info[READ_ONLY_OPTION] = True
        if self.connection.is_async:
            bridge.autocommit_read(self._pooled, True)
        return self._pooled

    def __exit__(self, *exc: Any) -> None:
        if self._pooled is not None:
            if not self._pooled.invalidated:
                self._pooled.info.pop(READ_ONLY_OPTION, None)
                if self.connection.is_async:
                    bridge.autocommit_read(self._pooled, False)
            self._pooled.close()
            self._pooled = None
