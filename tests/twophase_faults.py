"""Real faults for the two-phase tests: server sessions killed at a chosen moment.

    with commit_acknowledgement_lost(engine, kill=lambda: kill_sessions(url)):
        ...            # the engine's next COMMIT lands, then every session dies

Sessions are killed from an admin connection of their own (pg_terminate_backend,
KILL CONNECTION); only sessions of the test databases are touched.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

from rhosocial_ar import twophase
from tests.conftest import SERVER_URLS


def _databases(url: sa.URL) -> list[str]:
    """The databases whose sessions may be killed: the test ones, and the URL's own."""
    names = {sa.make_url(u).database for urls in SERVER_URLS.values() for u in urls}
    return sorted(n for n in names | {url.database} if n)


def kill_sessions(url: str) -> int:
    """Kill every session of the test databases on ``url``'s server but our own; returns how many."""
    parsed = sa.make_url(url)
    admin = sa.create_engine(parsed, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if parsed.get_backend_name() == "postgresql":
                # the timeout makes pg_terminate_backend wait until the session is gone
                return len(conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                    "WHERE datname = ANY(:dbs) AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"), {"dbs": _databases(parsed)}).all())
            return _kill_mysql(conn, _databases(parsed))
    finally:
        admin.dispose()


def _kill_mysql(conn: sa.Connection, databases: list[str]) -> int:
    query = sa.text("SELECT id FROM information_schema.processlist WHERE db IN :dbs "
                    "AND id <> CONNECTION_ID() AND command <> 'Killed'"
                    ).bindparams(sa.bindparam("dbs", expanding=True))
    ids = conn.execute(query, {"dbs": databases}).scalars().all()
    for session in ids:
        with contextlib.suppress(sa.exc.OperationalError):    # ended by itself meanwhile
            conn.exec_driver_sql(f"KILL CONNECTION {int(session)}")
    deadline = time.monotonic() + 5
    while conn.execute(sa.text("SELECT count(*) FROM information_schema.processlist "
                               "WHERE id IN :ids").bindparams(
                                   sa.bindparam("ids", expanding=True)),
                       {"ids": list(ids) or [-1]}).scalar():
        if time.monotonic() > deadline:
            raise RuntimeError(f"sessions {ids} outlived KILL CONNECTION")
        time.sleep(0.05)
    return len(ids)


@contextlib.contextmanager
def commit_acknowledgement_lost(engine: sa.Engine, kill: Callable[[], Any], *,
                                landed: bool = True) -> Iterator[list[str]]:
    """The engine's first COMMIT once every branch is prepared (the decision's) reaches the
    server, then its sessions are killed before the client hears back (with
    ``landed=False``, killed before the COMMIT is sent).

    The client sees the driver's real error from its dead connection. Yields a
    list that gets 'fired' once the fault happened.
    """
    dialect = engine.dialect
    real = dialect.do_commit
    armed: list[str] = []
    fired: list[str] = []

    def arm(step: str) -> None:
        if step == "after_prepares":
            armed.append(step)

    def do_commit(dbapi_connection: Any) -> None:
        if fired or not armed:
            real(dbapi_connection)
            return
        fired.append("fired")
        if landed:
            real(dbapi_connection)                 # durable on the server
        kill()
        if not landed:
            real(dbapi_connection)                 # the COMMIT meets a dead session
        else:
            dbapi_connection.cursor().execute("SELECT 1")    # the answer that never comes
        raise AssertionError("the session survived being killed")

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    twophase.crash_point = arm
    try:
        yield fired
    finally:
        twophase.crash_point = lambda step: None
        del dialect.do_commit       # the class's method again


@contextlib.contextmanager
def fresh_sessions_killed(engine: sa.Engine, kill: Callable[[], Any],
                          once: list[str]) -> Iterator[list[str]]:
    """Once ``once`` is not empty, each connection the engine opens is killed before its
    first statement (the server is as good as unreachable)."""
    killed: list[str] = []

    def on_connect(conn: sa.Connection) -> None:
        if once:
            kill()
            killed.append("killed")

    sa.event.listen(engine, "engine_connect", on_connect)
    try:
        yield killed
    finally:
        sa.event.remove(engine, "engine_connect", on_connect)
