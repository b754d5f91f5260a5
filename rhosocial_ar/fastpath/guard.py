"""Whether a statement may skip ``Connection.execute``: only when nobody would notice.

    if guard.watched(sa_conn): sa_conn.execute(stmt, params)    # SQLAlchemy runs it

The fast path sends what ``Connection.execute`` would send, so it may run a
statement only where ``Connection.execute`` would do nothing else: no
``echo`` (or INFO logging of ``sqlalchemy.engine``), no listener of any
``ConnectionEvents`` on the connection or its engine, no statement-level
``DialectEvents`` (``do_execute``, ``do_executemany``, ...) and no pool
``checkout`` listener, no execution option beyond those that act when a
connection or transaction starts (``SAFE_OPTIONS``; ``schema_translate_map``,
``stream_results`` and every other one change what is sent), and the fast
path not switched off for the engine. Checked on every statement, so a
listener or option added mid-run applies to the next one.
"""

from __future__ import annotations

import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy.events import ConnectionEvents

__all__ = ["SAFE_OPTIONS", "switch_off", "watched"]

# execution options applied by SQLAlchemy to the connection or the transaction (before
# any statement), or read only by SQLAlchemy's statement cache: statements are unchanged
SAFE_OPTIONS = frozenset({
    "isolation_level", "postgresql_readonly", "postgresql_deferrable", "logging_token",
    "compiled_cache", "preserve_rowcount",
})

_switched_off: weakref.WeakSet[Any] = weakref.WeakSet()
_any_switched_off = False     # asked on every statement: cheaper than the set's length


def switch_off(engine: sa.Engine) -> None:
    """Every statement on this engine goes through ``Connection.execute`` (config ``fast_path: False``)."""
    global _any_switched_off
    _switched_off.add(engine)
    _any_switched_off = True


def watched(sa_conn: sa.Connection) -> bool:
    """True when SQLAlchemy itself must run statements on this connection (see the docstring)."""
    if sa_conn._echo:
        return True
    engine = sa_conn.engine
    # the flags say a listener was added once (SQLAlchemy never clears them); the
    # connection's dispatch holds its own listeners and its engine's, and the Engine class's
    if (sa_conn._has_events or engine._has_events) and _connection_listeners(sa_conn.dispatch):
        return True
    options = sa_conn._execution_options
    if options and not SAFE_OPTIONS.issuperset(options):
        return True
    dialect = engine.dialect
    if dialect._has_events and _statement_listeners(dialect):
        return True
    if engine.pool.dispatch.checkout:
        return True
    return _any_switched_off and engine in _switched_off


_CONNECTION_EVENTS = tuple(name for name in dir(ConnectionEvents)
                           if not name.startswith("_") and name != "dispatch")


def _connection_listeners(dispatch: Any) -> bool:
    return any(getattr(dispatch, name) for name in _CONNECTION_EVENTS)


def _statement_listeners(dialect: Any) -> bool:
    """Listeners that see each statement (not ``do_connect``, which the library itself uses)."""
    dispatch = dialect.dispatch
    return bool(dispatch.do_execute or dispatch.do_executemany or dispatch.do_execute_no_params
                or dispatch.do_setinputsizes)
