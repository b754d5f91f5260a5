"""The databases a run measures: SQLite files, a PostgreSQL and a MariaDB/MySQL database.

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
from urllib.parse import unquote, urlsplit

from . import counting, schema

PRAGMAS = ("PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON")

DEFAULT_URLS = {
    "postgresql": os.environ.get(
        "RHOSOCIAL_AR_BENCH_PG_URL", "postgresql://root@127.0.0.1:5432/rhosocial_ar_bench"),
    "mysql": os.environ.get(
        "RHOSOCIAL_AR_BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306/rhosocial_ar_bench"),
}
LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MariaDB/MySQL"}
SA_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg2", "mysql": "mysql+pymysql"}


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


class ServerTarget(Target):
    """A database on a server; fresh tables for each workload."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port
        self.user = unquote(parts.username or "root")
        self.password = unquote(parts.password) if parts.password else None
        self.database = parts.path.lstrip("/")
        self._admin: Any = None

    def display(self) -> str:
        return f"{self.dialect}://{self.user}@{self.host}:{self.port}/{self.database}"

    def fresh(self, tag: str) -> None:
        cur = self.admin().cursor()
        for statement in schema.ddl(self.dialect):
            cur.execute(statement)

    def sa_url(self) -> str:
        auth = self.user + (f":{self.password}" if self.password else "")
        return f"{SA_DRIVERS[self.dialect]}://{auth}@{self.host}:{self.port}/{self.database}"

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None


class PostgresTarget(ServerTarget):
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.port = self.port or 5432

    def _params(self, database: str | None = None) -> dict[str, Any]:
        params = {"host": self.host, "port": self.port, "user": self.user,
                  "dbname": database or self.database}
        if self.password:
            params["password"] = self.password
        return params

    def ensure_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(**self._params("postgres"))
        conn.autocommit = True
        try:
            cur = conn.cursor()
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            conn.close()

    def admin(self) -> Any:
        if self._admin is None:
            import psycopg2

            self._admin = psycopg2.connect(**self._params())
            self._admin.autocommit = True
        return self._admin

    def _seed(self, table: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
        from psycopg2.extras import execute_values

        cur = self.admin().cursor()
        execute_values(cur, f"INSERT INTO {table} ({', '.join(columns)}) VALUES %s",
                       [tuple(r[c] for c in columns) for r in rows], page_size=1000)

    def analyze(self) -> None:
        self.admin().cursor().execute("VACUUM ANALYZE")

    def raw_connect(self) -> Any:
        import psycopg2

        return psycopg2.connect(**self._params(), cursor_factory=counting.psycopg2_cursor_class())

    def sa_connect_args(self) -> dict[str, Any]:
        return {"cursor_factory": counting.psycopg2_cursor_class()}

    def peewee_database(self) -> Any:
        import peewee

        params = self._params()
        return peewee.PostgresqlDatabase(
            params.pop("dbname"), cursor_factory=counting.psycopg2_cursor_class(), **params)

    def server_version(self) -> str:
        return "PostgreSQL " + str(self.scalar("SHOW server_version")).split()[0]


class MysqlTarget(ServerTarget):
    dialect = "mysql"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.port = self.port or 3306

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user,
                                  "charset": "utf8mb4"}
        if self.password:
            params["password"] = self.password
        return params

    def ensure_database(self) -> None:
        import pymysql

        conn = pymysql.connect(**self._params(), autocommit=True)
        try:
            conn.cursor().execute(
                f"CREATE DATABASE IF NOT EXISTS `{self.database}` CHARACTER SET utf8mb4")
        finally:
            conn.close()

    def admin(self) -> Any:
        if self._admin is None:
            import pymysql

            self._admin = pymysql.connect(**self._params(), database=self.database, autocommit=True)
        return self._admin

    def analyze(self) -> None:
        self.admin().cursor().execute("ANALYZE TABLE users, posts")

    def raw_connect(self) -> Any:
        import pymysql

        return pymysql.connect(**self._params(), database=self.database,
                               cursorclass=counting.pymysql_cursor_class())

    def sa_connect_args(self) -> dict[str, Any]:
        return {"cursorclass": counting.pymysql_cursor_class()}

    def peewee_database(self) -> Any:
        import peewee

        return peewee.MySQLDatabase(self.database, cursorclass=counting.pymysql_cursor_class(),
                                    **self._params())

    def server_version(self) -> str:
        version = str(self.scalar("SELECT VERSION()"))
        if "mariadb" in version.lower():
            return "MariaDB " + version.split("-")[0]
        return "MySQL " + version


def make_target(spec: dict[str, Any]) -> Target:
    """A target from its JSON description: ``{'dialect': 'sqlite', 'dir': ...}`` or ``{'url': ...}``."""
    dialect = spec["dialect"]
    if dialect == "sqlite":
        return SqliteTarget(spec["dir"])
    if dialect == "postgresql":
        return PostgresTarget(spec["url"])
    if dialect == "mysql":
        return MysqlTarget(spec["url"])
    raise ValueError(f"unknown database {dialect!r}; expected sqlite, postgresql or mysql")
