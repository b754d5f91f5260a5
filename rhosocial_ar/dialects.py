"""Everything that differs between SQLite, PostgreSQL and MySQL/MariaDB.

    url = connection_url({'driver': 'postgresql', 'host': 'db', 'database': 'app'})
    stmt = upsert(engine.dialect, users, rows, conflict_keys=['email'], update=['name'])

This is the only module that names a dialect; the rest of the library asks
the functions here about capabilities.
"""

from __future__ import annotations

import contextlib
import decimal
import pathlib
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Dialect, Engine

from .errors import ConfigurationError
from .fastpath import CONNECT_TIMEOUT, bound_pymysql_handshake, bridge

__all__ = ["connection_url", "max_bind_params", "prepare_engine", "upsert"]

# config 'driver' -> SQLAlchemy drivername; 'mariadb' is an alias of 'mysql'
DRIVERS = {
    "sqlite": "sqlite",
    "postgresql": "postgresql+psycopg2",
    "postgres": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}

# bound parameters one statement may carry; psycopg2 and PyMySQL bind on the
# client, so their limit is the server's packet size, kept well below here
_BIND_LIMITS = {"sqlite": 32766, "postgresql": 65535, "mysql": 65535}
_SQLITE_OLD_LIMIT = 999


def connection_url(config: dict[str, Any]) -> URL:
    """Build a SQLAlchemy URL from driver/host/port/database/username/password."""
    driver = config.get("driver")
    if driver not in DRIVERS:
        raise ConfigurationError(
            f"'driver': unknown driver {driver!r}; expected one of {sorted(DRIVERS)}"
        )
    database = config.get("database")
    if not database:
        raise ConfigurationError(f"'database': missing for driver {driver!r}")
    port = config.get("port")
    if port is not None and not isinstance(port, int):
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise ConfigurationError(f"'port': not a number: {port!r}") from None
    if DRIVERS[driver] == "sqlite":
        return URL.create("sqlite", database=str(database))
    return URL.create(
        DRIVERS[driver],
        username=config.get("username"),
        password=config.get("password"),
        host=config.get("host", "localhost"),
        port=port,
        database=str(database),
    )


# key in a pooled connection's ``info`` while it serves one read outside a transaction
READ_ONLY_OPTION = "rhosocial_ar_autocommit_read"



def default_connect_args(url: URL) -> dict[str, Any]:
    """Driver options every engine we create gets unless the config overrides them."""
    if url.get_backend_name() == "postgresql" and url.get_driver_name() == "psycopg2":
        return {"connect_timeout": CONNECT_TIMEOUT}
    if url.get_backend_name() in ("mysql", "mariadb") and url.get_driver_name() == "pymysql":
        return {"connect_timeout": CONNECT_TIMEOUT}
    return {}


def is_retryable(exc: BaseException) -> bool:
    """A deadlock, lock timeout or serialization failure: the whole transaction may retry."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "pgcode", None)
    if code is not None:
        return code in ("40P01", "40001", "55P03")
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    return len(args) > 0 and args[0] in (1213, 1205)   # deadlock, lock wait timeout


# dialects whose engines are prepared: an engine and its execution_options() copies share one
_prepared: weakref.WeakSet[Dialect] = weakref.WeakSet()


def prepare_engine(engine: Engine) -> None:
    """Make an engine's transactions and connects behave the same on every dialect.

    pysqlite opens transactions lazily and breaks SAVEPOINT; SQLAlchemy's
    documented recipe hands transaction control back to SQLAlchemy. PyMySQL's
    connect timeout covers only the TCP connect (see ``fastpath.bound_pymysql_handshake``).
    """
    dialect = engine.dialect
    if dialect in _prepared:
        return
    if dialect.name == "sqlite":
        _sqlite_transactions(engine)
    elif dialect.name in ("mysql", "mariadb") and dialect.driver == "pymysql":
        bound_pymysql_handshake(engine)
    _prepared.add(dialect)


def _sqlite_transactions(engine: Engine) -> None:
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
        # sqlite3's PEP 249 mode (autocommit=False, Python 3.12+) manages transactions
        # itself, SAVEPOINT included: nothing to hand back, and the setting is ignored there
        if getattr(dbapi_connection, "autocommit", None) is not False:
            dbapi_connection.isolation_level = None
        if hasattr(dbapi_connection, "create_collation"):
            dbapi_connection.create_collation(DECIMAL_COLLATION, _compare_decimals)
        else:   # aiosqlite's adapted connection: in aiosqlite's thread
            bridge.sqlite_collation(dbapi_connection, DECIMAL_COLLATION, _compare_decimals)

    # the DB-API connections SQLAlchemy has put in AUTOCOMMIT (the engine's or a
    # connection's isolation_level), held while they are: no BEGIN for them
    autocommit: dict[int, Any] = {}
    set_isolation_level = dialect.set_isolation_level

    def set_level(dbapi_connection: Any, level: Any) -> None:
        set_isolation_level(dbapi_connection, level)
        if level == "AUTOCOMMIT":
            autocommit[id(dbapi_connection)] = dbapi_connection
        else:
            autocommit.pop(id(dbapi_connection), None)

    def do_begin(dbapi_connection: Any) -> None:
        # no BEGIN for a read outside any transaction (SQLite reads are atomic), in
        # AUTOCOMMIT, or where a transaction is open already: sqlite3's PEP 249 mode
        # keeps one open, and a user's own "begin" listener may have sent BEGIN
        # driver_connection: sqlite3's, or aiosqlite's (its adapted connection has no in_transaction)
        if dbapi_connection.info.get(READ_ONLY_OPTION) \
                or dbapi_connection.driver_connection.in_transaction \
                or id(dbapi_connection.dbapi_connection) in autocommit:
            return
        dbapi_connection.cursor().execute("BEGIN")

    # the recipe's "begin" listener, as this engine's dialect's own do_begin: any
    # engine listener makes SQLAlchemy (and the fast path) look for listeners on
    # every statement
    dialect.do_begin = do_begin  # type: ignore[method-assign]
    dialect.set_isolation_level = set_level  # type: ignore[method-assign]


def datetime_type(dialect: Dialect) -> Any:
    """The DATETIME of ``precise_datetime()`` for one dialect."""
    return mysql.DATETIME(fsp=6) if dialect.name in ("mysql", "mariadb") else sa.DateTime()


# SQLite has no exact decimal type: decimals are TEXT compared with this collation
DECIMAL_COLLATION = "rhosocial_ar_decimal"


def decimals_as_text(dialect: Dialect) -> bool:
    """Whether exact decimals are stored as text (SQLite: its NUMERIC keeps 15 digits)."""
    return dialect.name == "sqlite"


def _compare_decimals(left: str, right: str) -> int:
    """Order two decimal texts by value ('1.5' and '1.500000' are equal); others as text."""
    try:
        a, b = decimal.Decimal(left), decimal.Decimal(right)
        return (a > b) - (a < b)
    except decimal.InvalidOperation:   # not a number (or NaN): plain text order
        return (left > right) - (left < right)


def precise_datetime() -> Any:
    """DateTime that keeps microseconds everywhere (MySQL's DATETIME drops them)."""
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def precise_time() -> Any:
    return sa.Time().with_variant(mysql.TIME(fsp=6), "mysql", "mariadb")


def json_type(dialect: Dialect) -> Any:
    """The JSON column of nested models, dicts and lists: JSONB on PostgreSQL (compared by value)."""
    if dialect.name == "postgresql":
        return postgresql.JSONB(none_as_null=True)
    return sa.JSON(none_as_null=True)


def max_bind_params(dialect: Dialect) -> int:
    """How many bound parameters fit in one statement on this dialect."""
    if dialect.name == "sqlite":
        version = getattr(dialect.dbapi, "sqlite_version_info", (3, 32))
        return _BIND_LIMITS["sqlite"] if version >= (3, 32) else _SQLITE_OLD_LIMIT
    return _BIND_LIMITS.get(dialect.name, 999)


def upsert(
    dialect: Dialect,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    conflict_keys: Sequence[str],
    update: Sequence[str],
    increment: str | None = None,
) -> sa.Insert:
    """One multi-row INSERT that updates ``update`` columns on a key conflict.

    MySQL has no conflict target: ``ON DUPLICATE KEY UPDATE`` fires on any
    unique key, so ``conflict_keys`` must name a unique key there too.
    ``increment`` names a column (an optimistic-lock version) that an update adds one to.
    """
    # the 1 is SQL, not a parameter: PyMySQL's executemany sends the ON DUPLICATE KEY
    # UPDATE clause as it is, without filling in its parameters
    one = sa.literal_column("1", type_=table.c[increment].type) if increment else None
    bump: dict[str, Any] = {increment: table.c[increment] + one} if increment else {}
    name = dialect.name
    if name in ("postgresql", "sqlite"):
        module = postgresql if name == "postgresql" else sqlite
        stmt = module.insert(table).values(list(rows))
        # the columns, not their keys: a field may name a column otherwise (Field(column=...))
        target = [table.c[key] for key in conflict_keys]
        if not update:
            return stmt.on_conflict_do_nothing(index_elements=target)
        return stmt.on_conflict_do_update(
            index_elements=target,
            set_={**{c: stmt.excluded[c] for c in update}, **bump},
        )
    if name in ("mysql", "mariadb"):
        my = mysql.insert(table).values(list(rows))
        # a no-op assignment keeps "do nothing" one statement without IGNORE,
        # which would also hide unrelated errors
        if not update:
            targets = {c: my.inserted[c] for c in conflict_keys}
        else:
            targets = {**{c: my.inserted[c] for c in update}, **bump}
        return my.on_duplicate_key_update(targets)
    raise ConfigurationError(f"upserts are not supported on dialect {name!r}")


def supports_savepoints(dialect: Dialect) -> bool:
    return dialect.name in ("sqlite", "postgresql", "mysql", "mariadb")


def typed_value(dialect: Dialect, bind: Any, column_type: Any) -> Any:
    """A bound value as one branch of a CASE that is assigned to a column of ``column_type``.

    PostgreSQL gives a CASE of untyped parameters the type text, which it will
    not assign to a JSON, enum or date column: there the value is cast.
    """
    return sa.cast(bind, column_type) if dialect.name == "postgresql" else bind


def explain_prefix(dialect: Dialect) -> str:
    """What turns a SELECT into a request for its plan (SQLite's plain EXPLAIN gives bytecode)."""
    return "EXPLAIN QUERY PLAN " if dialect.name == "sqlite" else "EXPLAIN "


def plan_text(dialect: Dialect, keys: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The rows of an EXPLAIN as text: PostgreSQL's lines, SQLite's tree, MySQL's table."""
    if dialect.name == "sqlite":   # (id, parent, notused, detail): indent each step under its parent
        depth: dict[Any, int] = {0: -1}
        lines = []
        for step, parent, _, detail in rows:
            depth[step] = depth.get(parent, -1) + 1
            lines.append("  " * depth[step] + str(detail))
        return "\n".join(lines)
    if len(keys) == 1:
        return "\n".join(str(row[0]) for row in rows)
    shown = [[("NULL" if v is None else str(v)) for v in row] for row in [keys, *rows]]
    widths = [max(len(row[i]) for row in shown) for i in range(len(keys))]
    return "\n".join(" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                     for row in shown)


# -- two-phase commit -------------------------------------------------------------

_PG_SETTING_FIX = (
    "PostgreSQL has max_prepared_transactions = 0, which disables PREPARE TRANSACTION; "
    "as a superuser run ALTER SYSTEM SET max_prepared_transactions = 64 (at least "
    "max_connections is safest) and restart the server"
)


def two_phase_problem(engine: Engine) -> str | None:
    """Why this engine cannot take part in a two-phase commit, or None if it can."""
    name = engine.dialect.name
    if name == "sqlite":
        return "SQLite has no prepared transactions (it can join only as the last resource)"
    if name == "postgresql":
        with engine.connect() as conn:
            setting = conn.exec_driver_sql("SHOW max_prepared_transactions").scalar()
        return _PG_SETTING_FIX if int(setting or 0) == 0 else None
    if name in ("mysql", "mariadb"):
        return None
    return f"two-phase commit is not supported on {name!r}"


def in_doubt_xids(conn: sa.Connection, prefix: str) -> list[str]:
    """Prepared transactions whose id starts with ``prefix``, in this database.

    PostgreSQL ids are server-wide, so they are filtered by database and
    owner; MySQL's ``XA RECOVER`` cannot say which database a branch wrote to.
    """
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(
            "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() "
            "AND owner = current_user"
        ).scalars()
        return [gid for gid in rows if gid.startswith(prefix)]
    if conn.dialect.name in ("mysql", "mariadb"):
        found = []
        for row in conn.exec_driver_sql("XA RECOVER").mappings():
            data = row["data"]
            xid = (data.decode() if isinstance(data, bytes) else data)[: row["gtrid_length"]]
            if xid.startswith(prefix):
                found.append(xid)
        return found
    return []


def finish_prepared(conn: sa.Connection, xid: str, commit: bool) -> None:
    """COMMIT or ROLLBACK a prepared transaction from an AUTOCOMMIT connection."""
    if conn.dialect.name == "postgresql":
        verb = "COMMIT PREPARED" if commit else "ROLLBACK PREPARED"
    else:
        verb = "XA COMMIT" if commit else "XA ROLLBACK"
    conn.execute(sa.text(f"{verb} :xid").bindparams(sa.bindparam("xid", xid, literal_execute=True)))


def is_unknown_xid(exc: BaseException) -> bool:
    """The prepared transaction is gone, or (MySQL) still held by its live session."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "pgcode", None)
    if code is not None:
        return bool(code == "42704")            # undefined_object
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    return len(args) > 0 and args[0] == 1397    # XAER_NOTA


def is_empty_branch_gone(exc: BaseException) -> bool:
    """(MariaDB) XA_RBROLLBACK finishing a prepared branch that wrote nothing: the server
    rolled it back, which is what committing it would have done too."""
    args: tuple[Any, ...] = tuple(getattr(getattr(exc, "orig", None), "args", ()))
    return len(args) > 0 and args[0] == 1402


def max_xid_length(dialect: Dialect) -> int:
    return 64 if dialect.name in ("mysql", "mariadb") else 199


def create_database(url: URL) -> None:
    """CREATE DATABASE for ``url`` on its server (a SQLite file is created by its first connect)."""
    if url.get_backend_name() == "sqlite":
        return
    name = _quoted_database(url)
    with _server(url) as admin:
        admin.exec_driver_sql(f"CREATE DATABASE {name}")


def drop_database(url: URL) -> None:
    """DROP DATABASE for ``url``, ending the sessions still on it; a SQLite file is deleted."""
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            pathlib.Path(url.database).unlink(missing_ok=True)
        return
    name = _quoted_database(url)
    with _server(url) as admin:
        if url.get_backend_name() == "postgresql":
            admin.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = :name AND pid <> pg_backend_pid()"),
                          {"name": url.database})
        admin.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")


def _quoted_database(url: URL) -> str:
    if not url.database:
        raise ConfigurationError(f"{url.render_as_string(hide_password=True)} names no database")
    return str(url.get_dialect()().identifier_preparer.quote(url.database))


@contextlib.contextmanager
def _server(url: URL) -> Iterator[sa.Connection]:
    """An AUTOCOMMIT session on ``url``'s server, outside the database (PostgreSQL: 'postgres')."""
    admin_database = "postgres" if url.get_backend_name() == "postgresql" else None
    server = URL.create(url.drivername, url.username, url.password, url.host, url.port,
                        admin_database, url.query)
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT",
                              connect_args=default_connect_args(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()
