"""PostgreSQL and MariaDB/MySQL targets: a dedicated database, fresh tables per workload.

    target = make_target({'dialect': 'postgresql',
                          'url': 'postgresql://root@127.0.0.1:5432/rhosocial_ar_bench'})
    target.ensure_database()          # CREATE DATABASE when missing
    target.fresh('w1')                # DROP and CREATE the two tables

The URL names the server and the database; the driver is always psycopg2
or PyMySQL. The admin connection that seeds and checks is in autocommit
mode, so it holds no lock while an implementation works.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import unquote, urlsplit

from . import counting, schema
from .targets import Target

SA_DRIVERS = {"postgresql": "postgresql+psycopg2", "mysql": "mysql+pymysql"}


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
        """COPY, the fastest way in (the data has no tab, newline or backslash to escape)."""
        text = "".join("\t".join(str(r[c]) for c in columns) + "\n" for r in rows)
        if "\\" in text:
            raise ValueError("seed data must not contain backslashes (COPY text format)")
        self.admin().cursor().copy_expert(
            f"COPY {table} ({', '.join(columns)}) FROM STDIN", io.StringIO(text))

    def analyze(self) -> None:
        self.admin().cursor().execute("VACUUM ANALYZE users, posts")

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
