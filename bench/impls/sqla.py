"""Engines and the W12 upsert for the SQLAlchemy-based implementations (Core and ORM).

    engine = make_engine(target)     # counting DB-API connections, SQLite pragmas
    stmt = upsert(users, 'sqlite')   # INSERT ... ON CONFLICT (email) DO UPDATE SET ...

On SQLite the engine follows SQLAlchemy's documented recipe for real
transactions with pysqlite (the driver's own transaction handling off, an
explicit ``BEGIN`` from the ``begin`` event), the same thing rhosocial_ar
does to its SQLite engines, so every implementation reads and writes
inside one real transaction.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import mysql, postgresql, sqlite

from ..schema import UPSERT_KEY, UPSERT_SET
from ..targets import PRAGMAS, Target


def sqlite_pragmas(dbapi_connection: Any, _record: Any = None) -> None:
    """A pool ``connect`` listener: the benchmark's per-connection pragmas."""
    for pragma in PRAGMAS:
        dbapi_connection.execute(pragma)


def make_engine(target: Target) -> sa.Engine:
    engine = sa.create_engine(target.sa_url(), connect_args=target.sa_connect_args())
    if target.dialect == "sqlite":
        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.isolation_level = None
            sqlite_pragmas(dbapi_connection)

        @event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN")
    with engine.connect() as conn:      # first connect: the dialect initialises
        conn.exec_driver_sql("SELECT COUNT(*) FROM users").all()
    return engine


def upsert(table: Any, dialect: str) -> Any:
    """The dialect's upsert of one user on its email, the row's values bound when executed.

    ``table`` is a Core ``Table`` or an ORM entity: SQLAlchemy's documented
    upserts are its dialect-specific ``insert()`` constructs.
    """
    if dialect == "mysql":
        stmt = mysql.insert(table)
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in UPSERT_SET})
    stmt = (sqlite if dialect == "sqlite" else postgresql).insert(table)
    return stmt.on_conflict_do_update(index_elements=[UPSERT_KEY],
                                      set_={c: stmt.excluded[c] for c in UPSERT_SET})
