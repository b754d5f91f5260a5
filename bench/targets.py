"""The databases a run measures: SQLite files here, servers in ``servers``.

    target = make_target({'dialect': 'sqlite', 'dir': '/tmp/bench'})
    target.fresh('w3')                        # a new database file, empty tables
    target.seed_users(schema.user_rows(10))   # with the raw driver, not counted
    conn = target.raw_connect()               # a counting DB-API connection
    target.scalar('SELECT COUNT(*) FROM users')

SQLite runs with the same pragmas for every implementation (``PRAGMAS``):
``journal_mode=WAL`` is set once when the file is created (it is stored in
the file), ``synchronous=NORMAL`` and ``foreign_keys=ON`` on every
connection. Servers get fresh tables in a dedicated database, created when
missing, and ``ANALYZE`` after seeding so plans do not depend on autovacuum.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from . import counting, schema

PRAGMAS = ("PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON")

DEFAULT_URLS = {
    "postgresql": os.environ.get(
        "RHOSOCIAL_AR_BENCH_PG_URL", "postgresql://root@127.0.0.1:5432/rhosocial_ar_bench"),
    "mysql": os.environ.get(
        "RHOSOCIAL_AR_BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306/rhosocial_ar_bench"),
}
LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MariaDB/MySQL"}


class Target:
    """One database kind; subclasses know its driver."""

    dialect = ""
    placeholder = "%s"

    def fresh(self, tag: str) -> None:
        """Start a workload on empty tables (SQLite: a new file)."""
        raise NotImplementedError

    def raw_connect(self) -> Any:
        """A DB-API connection with counting cursors, ready for the workload."""
        raise NotImplementedError

    def sa_url(self) -> str:
        raise NotImplementedError

    def sa_connect_args(self) -> dict[str, Any]:
        raise NotImplementedError

    def peewee_database(self) -> Any:
        raise NotImplementedError

    def admin(self) -> Any:
        """An uncounted autocommit DB-API connection for seeding and checking."""
        raise NotImplementedError

    def server_version(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # -- shared helpers ---------------------------------------------------------

    def _insert_sql(self, table: str, columns: tuple[str, ...]) -> str:
        marks = ", ".join([self.placeholder] * len(columns))
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"

    def _seed(self, table: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
        self.admin().cursor().executemany(
            self._insert_sql(table, columns),
            [tuple(self._db_value(r[c]) for c in columns) for r in rows])

    def _db_value(self, value: Any) -> Any:
        return value

    def seed_users(self, rows: list[dict[str, Any]]) -> None:
        """Insert users with ids 1..len(rows) (checked), uncounted."""
        self._seed("users", schema.USER_COLUMNS, rows)
        low, high, count = self.row("SELECT MIN(id), MAX(id), COUNT(*) FROM users")
        if rows and (low, high, count) != (1, len(rows), len(rows)):
            raise RuntimeError(f"seeding gave ids {low}..{high} ({count} rows), not 1..{len(rows)}")

    def seed_posts(self, rows: list[dict[str, Any]]) -> None:
        self._seed("posts", schema.POST_COLUMNS, rows)

    def analyze(self) -> None:
        self.admin().cursor().execute("ANALYZE")

    def row(self, sql: str) -> tuple[Any, ...]:
        cur = self.admin().cursor()
        cur.execute(sql)
        return tuple(cur.fetchone())

    def scalar(self, sql: str) -> Any:
        return self.row(sql)[0]


class SqliteTarget(Target):
    """A new SQLite file per workload, in ``dir``."""

    dialect = "sqlite"
    placeholder = "?"

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = ""
        self._admin: sqlite3.Connection | None = None

    def fresh(self, tag: str) -> None:
        self.close()
        self.path = os.path.join(self.directory, f"{tag}.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.remove(self.path + suffix)
        conn = self.admin()
        conn.execute("PRAGMA journal_mode=WAL")
        for statement in schema.ddl("sqlite"):
            conn.execute(statement)

    def admin(self) -> sqlite3.Connection:
        if self._admin is None:
            self._admin = sqlite3.connect(self.path, isolation_level=None)
            for pragma in PRAGMAS:
                self._admin.execute(pragma)
        return self._admin

    def _seed(self, table: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
        conn = self.admin()
        conn.execute("BEGIN")
        super()._seed(table, columns, rows)
        conn.execute("COMMIT")

    def _db_value(self, value: Any) -> Any:
        # the text sqlite3's default datetime adapter writes, without relying on it
        return value.isoformat(" ") if hasattr(value, "isoformat") else value

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def raw_connect(self) -> sqlite3.Connection:
        conn = counting.sqlite_connect(self.path, isolation_level=None,
                                       detect_types=sqlite3.PARSE_DECLTYPES)
        for pragma in PRAGMAS:
            conn.execute(pragma)
        return conn

    def sa_url(self) -> str:
        return f"sqlite:///{self.path}"

    def sa_connect_args(self) -> dict[str, Any]:
        return {"factory": counting.SqliteConnection}

    def peewee_database(self) -> Any:
        import peewee

        return peewee.SqliteDatabase(
            self.path, factory=counting.SqliteConnection,
            pragmas=[tuple(p.split()[1].split("=")) for p in PRAGMAS],
        )

    def server_version(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}"


def make_target(spec: dict[str, Any]) -> Target:
    """A target from its JSON description: ``{'dialect': 'sqlite', 'dir': ...}`` or ``{'url': ...}``."""
    dialect = spec["dialect"]
    if dialect == "sqlite":
        return SqliteTarget(spec["dir"])
    if dialect in ("postgresql", "mysql"):
        from .servers import MysqlTarget, PostgresTarget

        return (PostgresTarget if dialect == "postgresql" else MysqlTarget)(spec["url"])
    raise ValueError(f"unknown database {dialect!r}; expected sqlite, postgresql or mysql")
