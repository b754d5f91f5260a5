"""What the library does with a driver's or a pool's non-public attributes, each with a fallback.

    bound_pymysql_handshake(engine)     # connects to a hung MySQL server give up
    pool_text(engine.pool)              # an exhausted pool, in its own settings' words
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

__all__ = ["CONNECT_TIMEOUT", "bound_pymysql_handshake", "pool_text"]

log = logging.getLogger("rhosocial_ar")

# seconds a new connection may take; without it libpq waits for the OS (minutes)
CONNECT_TIMEOUT = 10

_warned: set[str] = set()


def bound_pymysql_handshake(engine: Engine) -> None:
    """Give up on a server that accepts the TCP connection but never answers.

    PyMySQL applies ``connect_timeout`` to the TCP connect only; the server's
    greeting and the login are read with ``read_timeout``, None by default, so a
    hung or frozen server (or a proxy in front of a dead one) holds every new
    connection forever. Unless the config sets a ``read_timeout``, connects read
    with the connect timeout, and the connection then waits for queries as long
    as they take, as before. That needs PyMySQL's ``_sock`` and ``_read_timeout``;
    a PyMySQL without them connects as it would by itself, with one warning.
    """

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        if cparams.get("read_timeout") is not None or "pymysql" in _warned:
            return None                                   # the config's own choice
        limit = cparams.get("connect_timeout") or CONNECT_TIMEOUT
        conn = dialect.loaded_dbapi.connect(*cargs, **{**cparams, "read_timeout": limit})
        sock = getattr(conn, "_sock", None)
        if sock is None or not hasattr(conn, "_read_timeout"):
            _warn_once("pymysql", "this PyMySQL has no Connection._sock/_read_timeout: "
                       "connects to a server that never answers are not bounded")
            conn.close()
            return None
        conn._read_timeout = None                         # PyMySQL re-arms the socket from it
        sock.settimeout(None)
        if hasattr(conn, "_current_timeout"):
            conn._current_timeout = None
        return conn


def pool_text(pool: Any) -> str:
    """What an exhausted pool looked like (QueuePool's private settings, '?' where absent)."""
    size = pool.size() if hasattr(pool, "size") else "?"
    overflow = getattr(pool, "_max_overflow", "?")
    timeout = getattr(pool, "_timeout", "?")
    in_use = pool.checkedout() if hasattr(pool, "checkedout") else "?"
    return (f"every pooled connection is in use ({in_use} checked out; pool_size={size}, "
            f"max_overflow={overflow}) and none came back within pool_timeout={timeout} s; "
            f"raise pool_size/max_overflow or hold connections for less time")


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning("rhosocial_ar: %s", message)
