"""Which connection a model's operation goes to.

    User.using('secondary').all()               # one query chain
    with User.using_connection('secondary'):    # every User operation in the block
        User.create(username='ann')

    class User(ActiveRecord):
        __connection__ = 'primary'              # writes
        __read_connection__ = 'replica'         # reads, unless read-your-writes applies

Overrides live in a ``ContextVar``: per thread and per asyncio task, nested
blocks restore the previous choice on exit, also on exceptions; inside
``request_scope()`` the copies of a web request's context share them (scope.py). Reads of a
model with ``__read_connection__`` go to the replica, except inside a
transaction on the primary and for ``__read_your_writes__`` seconds after
this context last wrote to the primary; a replica that cannot be reached
sends reads to the primary with a ``ReplicaUnavailableWarning``.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa

from .connections import Connection, get_connection
from .errors import QueryError, ReplicaUnavailableWarning
from .scope import ContextMap
from .transaction import current_frame, last_write, reading

__all__ = [
    "connection_name_for", "get_connection", "override_for", "read", "resolve",
    "using_connection",
]

log = logging.getLogger("rhosocial_ar")
R = TypeVar("R")

# after a replica failed, reads skip it for this long instead of waiting on it
REPLICA_RETRY_SECONDS = 5.0
_replica_down_until: dict[str, float] = {}
_replica_lock = threading.Lock()

_overrides: ContextMap[type, str] = ContextMap("rhosocial_ar_overrides")


@contextmanager
def using_connection(model: type, name: str) -> Iterator[None]:
    """Route every operation of ``model`` (and its subclasses) to ``name`` in the block."""
    get_connection(name)  # fail before the block runs, not at the first query
    token = _overrides.put(model, name)
    try:
        yield
    finally:
        _overrides.reset(token)   # ARError in a context that never saw the block


def override_for(model: Any) -> str | None:
    """The connection a ``using_connection`` block set for ``model``, if any."""
    overrides = _overrides.get()
    if overrides:
        for klass in model.__mro__:
            if klass in overrides:
                return overrides[klass]
    return None


def connection_name_for(model: Any, explicit: str | None = None) -> str:
    """The connection name for ``model``: explicit, then a block override, then its own."""
    if explicit is not None:
        return explicit
    return override_for(model) or (model.__connection__ if model.__shards__ is None
                                   else _unrouted(model))


def _unrouted(model: Any) -> str:
    """A sharded model's operation that no key or pin sends to one shard (sharding.py)."""
    raise QueryError(
        f"{model.__name__} is sharded over {list(model.__shards__)} and this operation needs one "
        f"shard: give the shard key ({model.__shard_key__}=...), or pick the shard with "
        f"{model.__name__}.on_shard(name) or `with {model.__name__}.using_connection(name):`"
    )


def resolve(model: Any, explicit: str | None = None) -> Connection:
    return get_connection(connection_name_for(model, explicit))


def read_connection_name(model: Any, explicit: str | None = None) -> tuple[str, str | None]:
    """(connection to read from, primary to fall back to when that is a replica)."""
    chosen = explicit or (override_for(model) if _overrides.get() else None)
    if chosen is not None:
        return chosen, None
    primary: str = model.__connection__ if model.__shards__ is None else _unrouted(model)
    replica: str | None = model.__read_connection__
    if replica is None or replica == primary:
        return primary, None
    if current_frame(primary) is not None:
        return primary, None          # a transaction reads its own writes
    wrote = last_write(primary)
    if wrote is not None and time.monotonic() - wrote < model.__read_your_writes__:
        return primary, None
    if replica in _replica_down_until and not _probe_turn(replica):
        return primary, None
    return replica, primary


def _probe_turn(replica: str) -> bool:
    """Whether this read may try a replica marked down: one reader once its window ends.

    The others keep reading from the primary meanwhile, rather than all
    waiting on a replica that may still be refusing, or hanging.
    """
    with _replica_lock:
        until = _replica_down_until.get(replica)
        now = time.monotonic()
        if until is None:             # another reader's probe found it back
            return True
        if until > now:
            return False
        _replica_down_until[replica] = now + REPLICA_RETRY_SECONDS
        return True


def read(model: Any, explicit: str | None, work: Callable[..., R], *args: Any) -> tuple[R, str]:
    """Run ``work(sa_connection, origin, *args)`` on the connection a read of ``model`` goes to.

    ``origin`` is the name records should write back to (the primary when the
    read goes to a replica); it is returned with the result.
    """
    name, fallback = read_connection_name(model, explicit)
    if fallback is None:
        frame = current_frame(name)
        if frame is not None:       # the transaction's own connection; never retried
            return work(frame.sa_conn, name, *args), name
        return _read_once_more(name, name, work, args), name
    origin = fallback
    try:
        with reading(get_connection(name)) as sa_conn:
            result = work(sa_conn, origin, *args)
        if _replica_down_until:       # a probe that worked: the replica is back for everyone
            _replica_down_until.pop(name, None)
        return result, origin
    except sa.exc.DBAPIError as exc:
        # only a lost or refused connection; an error in the SQL is the caller's
        if not (exc.connection_invalidated or _is_connect_failure(exc)):
            raise
        _mark_down(name, fallback, exc)
    return _read_once_more(fallback, origin, work, args), origin


def _read_once_more(name: str, origin: str, work: Callable[..., R], args: tuple[Any, ...]) -> R:
    """Run a read outside a transaction; retry it once on a connection found dead.

    A server restart leaves dead connections in the pool; SQLAlchemy discards
    them all on the first failure, so the retry gets a fresh one. A read has
    no effects, so repeating it is safe; inside a transaction it is not.
    """
    connection = get_connection(name)
    try:
        with reading(connection) as sa_conn:
            return work(sa_conn, origin, *args)
    except sa.exc.DBAPIError as exc:
        # no statement: the connect itself failed (it may look like a disconnect, e.g. a
        # MySQL handshake timing out), and connecting again would only wait as long again
        if not exc.connection_invalidated or exc.statement is None:
            raise
        log.warning("connection %r: a pooled connection was dead (%s); retrying the read once",
                    name, type(exc.orig).__name__)
    with reading(connection) as sa_conn:
        return work(sa_conn, origin, *args)


def _is_connect_failure(exc: sa.exc.DBAPIError) -> bool:
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) and (
        exc.statement is None or exc.connection_invalidated
    )


def _mark_down(replica: str, primary: str, exc: BaseException) -> None:
    with _replica_lock:
        _replica_down_until[replica] = time.monotonic() + REPLICA_RETRY_SECONDS
    message = (
        f"replica {replica!r} is unreachable ({type(exc.__cause__ or exc).__name__}); "
        f"reading from {primary!r} for the next {REPLICA_RETRY_SECONDS:g} s"
    )
    log.warning(message)
    warnings.warn(message, ReplicaUnavailableWarning, stacklevel=4)
