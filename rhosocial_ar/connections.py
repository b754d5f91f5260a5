"""Named connections, each one SQLAlchemy ``Engine``.

    ConnectionManager.configure('primary', {'driver': 'sqlite', 'database': 'main.db'})
    ConnectionManager.configure({'replica': {'url': 'postgresql+psycopg2://u@db/app',
                                             'read_only': True}})
    conn = get_connection('primary')
    conn.name, conn.engine, conn.dialect.name      # 'primary', Engine, 'sqlite'
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import ArgumentError

from . import aio, dialects, fastpath
from .compat import add_note
from .errors import ConfigurationError, ConnectionNotFound, PoolExhausted
from .fastpath import bridge

__all__ = ["Connection", "ConnectionManager", "get_connection"]

DEFAULT = "default"

_LOCATION_KEYS = {"driver", "host", "port", "database", "username", "password"}
_ENGINE_KEYS = {
    "echo",
    "pool_size",
    "max_overflow",
    "pool_timeout",
    "pool_recycle",
    "pool_pre_ping",
    "connect_args",
}
_KNOWN_KEYS = _LOCATION_KEYS | _ENGINE_KEYS | {"url", "engine", "read_only", "fast_path"}


class Connection:
    """One named database: its Engine, its dialect and whether it takes writes.

    ``is_async``: the Engine is an ``AsyncEngine``'s ``sync_engine``, used through
    the awaitable forms only (aio.py).
    """

    __slots__ = ("name", "engine", "read_only", "is_async", "_owns_engine", "_side")

    def __init__(self, name: str, engine: Engine, *, read_only: bool = False,
                 owns_engine: bool = True) -> None:
        self.name = name
        self.engine = engine
        self.read_only = read_only
        self.is_async: bool = engine.dialect.is_async
        self._owns_engine = owns_engine
        self._side: Engine | None = None

    @property
    def dialect(self) -> Dialect:
        return self.engine.dialect

    def connect(self) -> sa.Connection:
        """Check a connection out of the pool, with errors that name this connection.

        An exhausted pool raises ``PoolExhausted`` (with the pool settings);
        a failure to reach the database is the driver's error, unchanged, with
        a note naming the connection (never its password). A sync call on an
        async connection, or the reverse, raises ``ConnectionModeError``.
        """
        aio.check(self)
        try:
            return self.engine.connect()
        except sa.exc.TimeoutError as exc:
            raise PoolExhausted(f"connection {self.name!r}: {fastpath.pool_text(self.engine.pool)}") from exc
        except sa.exc.DBAPIError as exc:
            add_note(exc, f"rhosocial_ar connection {self.name!r} at {self.safe_url}")
            raise

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def side_engine(self) -> Engine:
        """The same database through a pool of its own, for short bookkeeping writes.

        The two-phase decision log is written while the coordinator holds a
        connection from the main pool; from that same pool, as many
        coordinators as it has connections would each wait for another's.
        """
        if self._side is None:
            # the engine's options too: a schema_translate_map puts the log where the
            # engine's own statements (and its CREATE of the log table) go
            self._side = sa.create_engine(
                self.engine.url, pool=self.engine.pool.recreate(),
                execution_options=dict(self.engine.get_execution_options()))
            dialects.prepare_engine(self._side)
        return self._side

    def dispose(self) -> None:
        """Close the pool's connections (only for engines this library created)."""
        # outside the bridge an async pool cannot close its connections: it drops them
        close = not self.is_async or aio.in_bridge()
        if self._side is not None:
            if not close:
                bridge.close_orphans(self._side)
            self._side.dispose(close=close)
            self._side = None
        if self._owns_engine:
            if not close:
                bridge.close_orphans(self.engine)
            self.engine.dispose(close=close)

    def __repr__(self) -> str:
        url = self.safe_url
        flag = " read_only" if self.read_only else ""
        return f"<Connection {self.name!r} {url}{flag}>"


def _engine_from_config(name: str, config: Mapping[str, Any]) -> tuple[Engine, bool]:
    unknown = sorted(set(config) - _KNOWN_KEYS)
    if unknown:
        raise ConfigurationError(
            f"connection {name!r}: unknown config key {unknown[0]!r}; "
            f"known keys: {sorted(_KNOWN_KEYS)}"
        )
    if not isinstance(config.get("fast_path", True), bool):
        raise ConfigurationError(f"connection {name!r}: 'fast_path' must be true or false")
    if "engine" in config:
        engine = aio.engine_of(config["engine"])
        if engine is None:
            raise ConfigurationError(
                f"connection {name!r}: 'engine' must be a SQLAlchemy Engine or AsyncEngine")
        extra = sorted(set(config) - {"engine", "read_only", "fast_path"})
        if extra:
            raise ConfigurationError(
                f"connection {name!r}: {extra[0]!r} cannot be combined with 'engine'"
            )
        return engine, False
    if "url" in config:
        if set(config) & _LOCATION_KEYS:
            clash = sorted(set(config) & _LOCATION_KEYS)[0]
            raise ConfigurationError(f"connection {name!r}: {clash!r} cannot be combined with 'url'")
        try:
            url = sa.make_url(config["url"])
        except (ArgumentError, ValueError, TypeError):
            # the message would echo the URL, password included
            raise ConfigurationError(f"connection {name!r}: 'url' is not a valid URL") from None
    else:
        try:
            url = dialects.connection_url(dict(config))
        except ConfigurationError as exc:
            raise ConfigurationError(f"connection {name!r}: {exc}") from None
    options = {key: config[key] for key in _ENGINE_KEYS if key in config}
    _check_engine_options(name, options)
    options["connect_args"] = {**dialects.default_connect_args(url),
                               **options.get("connect_args", {})}
    try:
        engine = aio.create_engine(name, url, **options)
    except (ArgumentError, TypeError) as exc:
        raise ConfigurationError(
            f"connection {name!r}: {_safe(str(exc), url)}"
        ) from None
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"connection {name!r}: driver {url.drivername!r} is not installed ({exc.name})"
        ) from None
    return engine, True


_NUMBER_KEYS = ("pool_size", "max_overflow", "pool_timeout", "pool_recycle")


def _check_engine_options(name: str, options: dict[str, Any]) -> None:
    """Name the offending key; SQLAlchemy's own errors often do not."""
    for key in _NUMBER_KEYS:
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigurationError(f"connection {name!r}: {key!r} must be a number, not {value!r}")
    if "pool_pre_ping" in options and not isinstance(options["pool_pre_ping"], bool):
        raise ConfigurationError(f"connection {name!r}: 'pool_pre_ping' must be true or false")
    if "echo" in options and options["echo"] not in (True, False, "debug"):
        raise ConfigurationError(f"connection {name!r}: 'echo' must be true, false or 'debug'")
    if "connect_args" in options and not isinstance(options["connect_args"], Mapping):
        raise ConfigurationError(f"connection {name!r}: 'connect_args' must be a dict")




def _safe(message: str, url: sa.URL) -> str:
    if url.password:
        message = message.replace(str(url.password), "***")
    return message


class ConnectionManager:
    """The registry of named connections (one per process)."""

    _connections: dict[str, Connection] = {}
    _lock = threading.Lock()

    @classmethod
    def configure(
        cls, name: str | Mapping[str, Mapping[str, Any]], config: Mapping[str, Any] | None = None
    ) -> None:
        """Configure one connection, or many from ``{name: config}``.

        Every config is checked before any is registered; configuring an
        existing name replaces (and disposes) the old connection.
        """
        if isinstance(name, Mapping):
            if config is not None:
                raise ConfigurationError("configure({name: config}) takes no second argument")
            configs = dict(name)
        else:
            if not isinstance(config, Mapping):
                raise ConfigurationError(f"connection {name!r}: config must be a dict")
            configs = {name: config}
        built: dict[str, Connection] = {}
        try:
            for conn_name, conn_config in configs.items():
                if not isinstance(conn_name, str) or not conn_name:
                    raise ConfigurationError(f"connection names must be strings, got {conn_name!r}")
                if not isinstance(conn_config, Mapping):
                    raise ConfigurationError(f"connection {conn_name!r}: config must be a dict")
                engine, owned = _engine_from_config(conn_name, conn_config)
                dialects.prepare_engine(engine)
                if not conn_config.get("fast_path", True):
                    fastpath.switch_off(engine)
                built[conn_name] = Connection(
                    conn_name, engine, read_only=bool(conn_config.get("read_only", False)),
                    owns_engine=owned,
                )
        except BaseException:
            for conn in built.values():
                conn.dispose()
            raise
        with cls._lock:
            replaced = [cls._connections[n] for n in built if n in cls._connections]
            cls._connections.update(built)
        for old in replaced:
            old.dispose()

    @classmethod
    def get(cls, name: str = DEFAULT) -> Connection:
        try:
            return cls._connections[name]
        except KeyError:
            raise ConnectionNotFound(
                f"no connection named {name!r}; configured: {sorted(cls._connections) or 'none'}"
            ) from None

    @classmethod
    def names(cls) -> list[str]:
        return sorted(cls._connections)

    @classmethod
    def connections(cls) -> Iterable[Connection]:
        return list(cls._connections.values())

    @classmethod
    def reset(cls) -> None:
        """Dispose every engine this library created and forget every name."""
        with cls._lock:
            old = list(cls._connections.values())
            cls._connections.clear()
        for conn in old:
            conn.dispose()

    @classmethod
    async def areset(cls) -> None:
        """``reset()``, awaited: async pools close their connections on the event loop."""
        await aio.run(cls.reset)

    @classmethod
    def create_all(cls, names: Iterable[str] | None = None) -> None:
        """Create the tables of every model on its connection (for tests and demos)."""
        from .registry import tables_by_connection

        wanted = set(names) if names is not None else None
        for conn_name, metadata in tables_by_connection().items():
            if wanted is not None and conn_name not in wanted:
                continue
            if conn_name not in cls._connections:
                continue
            metadata.create_all(aio.checked_engine(cls.get(conn_name)))

    @classmethod
    def drop_all(cls, names: Iterable[str] | None = None) -> None:
        """Drop the tables of every model on its connection (for tests)."""
        from .registry import tables_by_connection

        wanted = set(names) if names is not None else None
        for conn_name, metadata in tables_by_connection().items():
            if (wanted is None or conn_name in wanted) and conn_name in cls._connections:
                metadata.drop_all(aio.checked_engine(cls.get(conn_name)))

    @classmethod
    async def acreate_all(cls, names: Iterable[str] | None = None) -> None:
        await aio.run(cls.create_all, names)

    @classmethod
    async def adrop_all(cls, names: Iterable[str] | None = None) -> None:
        await aio.run(cls.drop_all, names)


def get_connection(name: str = DEFAULT) -> Connection:
    """The connection configured under ``name``; raises ``ConnectionNotFound``."""
    try:   # runs for every save: one dict lookup
        return ConnectionManager._connections[name]
    except KeyError:
        return ConnectionManager.get(name)


def forget(name: str) -> None:
    """Dispose one connection (if this library made its engine) and forget its name.

    For connections made on demand and dropped when idle (tenants.py).
    """
    with ConnectionManager._lock:
        conn = ConnectionManager._connections.pop(name, None)
    if conn is not None:
        conn.dispose()
