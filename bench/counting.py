"""Statement counting at the DB-API level, the same way for every implementation.

    from bench import counting
    conn = counting.sqlite_connect('/tmp/x.db')     # a sqlite3 connection that counts
    conn.cursor().execute('SELECT 1')
    counting.COUNTER.statements                       # 1

Every implementation's connections are made with the classes here (raw:
directly; SQLAlchemy engines, hence Core, ORM and rhosocial_ar: through
``connect_args``; peewee: through its connect parameters), so each counts
what reaches the driver's cursor, and nothing is added to SQLAlchemy's own
execution path: an engine-level ``before_cursor_execute`` listener would
switch off any fast path that runs only while no such listener is active,
and would cost SQLAlchemy-based implementations a dispatch that raw and
peewee do not pay.

A statement is one ``cursor.execute()`` or one ``cursor.executemany()``
call, however many rows it carries (on PyMySQL, whose ``executemany`` sends
its rows through ``execute``, one per statement it actually sends).
Transaction control (``BEGIN``, ``COMMIT``, ``SAVEPOINT``...) is counted
apart, in ``transaction_control``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "START TRANSACTION", "END")

# every statement sent, appended by the cursors below: one C-level call per
# statement keeps the counting cost (paid by every implementation, the raw
# driver included) at a fraction of a microsecond; it is classified later
_LOG: list[Any] = []
_log = _LOG.append


def _is_control(sql: Any) -> bool:
    if isinstance(sql, bytes | bytearray):
        sql = sql[:20].decode("ascii", "replace")
    return sql.lstrip()[:17].upper().startswith(_CONTROL)


class Counter:
    """Statements sent to the driver since the last ``reset()``."""

    def reset(self) -> None:
        _LOG.clear()

    @property
    def statements(self) -> int:
        return self.snapshot()[0]

    def snapshot(self) -> tuple[int, int]:
        """(statements, transaction control statements) since the last reset."""
        control = sum(1 for sql in _LOG if _is_control(sql))
        return len(_LOG) - control, control


COUNTER = Counter()


# -- sqlite3 ----------------------------------------------------------------------

_sqlite_execute = sqlite3.Cursor.execute
_sqlite_executemany = sqlite3.Cursor.executemany


class SqliteCursor(sqlite3.Cursor):
    """A sqlite3 cursor that counts its statements."""

    def execute(self, sql: str, parameters: Any = ()) -> Any:  # type: ignore[override]
        _log(sql)
        return _sqlite_execute(self, sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any) -> Any:  # type: ignore[override]
        _log(sql)
        return _sqlite_executemany(self, sql, seq_of_parameters)


_sqlite_cursor = sqlite3.Connection.cursor


class SqliteConnection(sqlite3.Connection):
    """A sqlite3 connection whose cursors (and ``execute`` shortcuts) count."""

    def cursor(self, factory: Any = SqliteCursor) -> Any:  # type: ignore[override]
        return _sqlite_cursor(self, factory)

    def execute(self, sql: str, parameters: Any = ()) -> Any:  # type: ignore[override]
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any) -> Any:  # type: ignore[override]
        return self.cursor().executemany(sql, parameters)


def sqlite_connect(path: str, **kwargs: Any) -> sqlite3.Connection:
    """``sqlite3.connect`` with counting cursors."""
    return sqlite3.connect(path, factory=SqliteConnection, **kwargs)


# -- psycopg2 ---------------------------------------------------------------------

def psycopg2_cursor_class() -> type:
    """A psycopg2 cursor class that counts (pass as ``cursor_factory``)."""
    import psycopg2.extensions

    base = psycopg2.extensions.cursor
    execute, executemany = base.execute, base.executemany

    class PgCursor(base):
        def execute(self, query: Any, vars: Any = None) -> Any:  # noqa: A002 (psycopg2's name)
            _log(query)
            return execute(self, query, vars)

        def executemany(self, query: Any, vars_list: Any) -> Any:
            _log(query)
            return executemany(self, query, vars_list)

    return PgCursor


# -- PyMySQL ----------------------------------------------------------------------

def pymysql_cursor_class() -> type:
    """A PyMySQL cursor class that counts (pass as ``cursorclass``)."""
    import pymysql.cursors

    execute = pymysql.cursors.Cursor.execute

    class MyCursor(pymysql.cursors.Cursor):
        # executemany() sends every statement through execute(): counted there
        def execute(self, query: Any, args: Any = None) -> Any:
            _log(query)
            return execute(self, query, args)

    return MyCursor
