"""Listeners of every kind, on engines the user built, see every statement the library sends.

    engine = sa.create_engine(url)
    sa.event.listen(engine, 'do_execute', count_it)        # or before_cursor_execute, echo, ...
    ConnectionManager.configure({'default': {'engine': engine}})

"Every statement" is checked against an independent count taken below
SQLAlchemy: the engine's DB-API cursors are the driver's own classes with
``execute``/``executemany`` counting what they are asked to run (sqlite3's
``factory``, psycopg2's ``cursor_factory``, PyMySQL's ``cursorclass``, all
passed in ``connect_args``: no listener of ours), and on SQLite also
sqlite3's ``set_trace_callback``, which sees each statement SQLite runs. The
workload's statements are known exactly (``EXPECTED_VERBS``), so the count
itself is checked too. Transaction control (BEGIN, COMMIT, ROLLBACK, which
SQLAlchemy sends through the dialect's ``do_begin``/``do_commit``/``do_rollback``,
not as executed statements) is left out of every comparison.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extensions
import pymysql.cursors
import pytest
import sqlalchemy as sa

from rhosocial_ar import ConnectionManager
from rhosocial_ar.fastpath import internals
from tests.conftest import Backend, make_tables
from tests.test_engine_setups import Boom, TenantItem, TenantOwner

# -- the count below SQLAlchemy ----------------------------------------------------------

CONTROL = {"BEGIN", "COMMIT", "ROLLBACK", "END"}


def verb(sql: str) -> str:
    """The statement's kind: its first keyword, 'ROLLBACK TO' for a savepoint's rollback."""
    words = sql.split(None, 2)
    if not words:
        return ""
    first = words[0].upper()
    if first == "ROLLBACK" and len(words) > 1 and words[1].upper() == "TO":
        return "ROLLBACK TO"
    return first


@dataclass
class Call:
    verb: str
    many: bool
    rows: int          # parameter sets of an executemany, else 1
    connection: int    # id() of the DB-API connection


@dataclass
class Tally:
    """What the driver was asked to run while recording, and pool events in the same order."""

    on: bool = False
    calls: list[Call] = field(default_factory=list)
    traced: list[str] = field(default_factory=list)      # sqlite3's trace callback
    # ('stmt', connection, index into calls) / ('checkout' | 'checkin', connection)
    log: list[tuple[str, int, int]] = field(default_factory=list)

    def note(self, connection: Any, sql: str, many: bool, rows: int = 1) -> None:
        if self.on:
            self.calls.append(Call(verb(sql), many, rows, id(connection)))
            self.log.append(("stmt", id(connection), len(self.calls) - 1))

    def trace(self, sql: str) -> None:
        if self.on:
            self.traced.append(sql)

    @contextlib.contextmanager
    def recording(self) -> Iterator[Tally]:
        self.calls.clear()
        self.traced.clear()
        self.log.clear()
        self.on = True
        try:
            yield self
        finally:
            self.on = False

    def statements(self, which: str = "all") -> list[str]:
        """Verbs of the statements run, without transaction control; 'single' or 'many' calls only."""
        return [c.verb for c in self.calls if c.verb not in CONTROL
                and (which == "all" or c.many == (which == "many"))]


TALLY = Tally()


class _SqliteCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        TALLY.note(self.connection, sql, False)
        return super().execute(sql, parameters)

    def executemany(self, sql: str, seq: Any, /) -> Any:
        seq = list(seq)
        TALLY.note(self.connection, sql, True, len(seq))
        return super().executemany(sql, seq)


class _SqliteConnection(sqlite3.Connection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_trace_callback(TALLY.trace)

    def cursor(self, factory: Any = _SqliteCursor) -> Any:  # type: ignore[override]
        return super().cursor(factory)


class _PgCursor(psycopg2.extensions.cursor):
    def execute(self, query: Any, vars: Any = None) -> Any:  # noqa: A002 - psycopg2's name
        TALLY.note(self.connection, str(query), False)
        return super().execute(query, vars)

    def executemany(self, query: Any, vars_list: Any) -> Any:
        vars_list = list(vars_list)
        TALLY.note(self.connection, str(query), True, len(vars_list))
        return super().executemany(query, vars_list)


class _MyCursor(pymysql.cursors.Cursor):
    _in_many = False

    def execute(self, query: Any, args: Any = None) -> Any:
        if not self._in_many:          # PyMySQL's executemany may run execute per row
            TALLY.note(self.connection, str(query), False)
        return super().execute(query, args)

    def executemany(self, query: Any, args: Any) -> Any:
        args = list(args)
        TALLY.note(self.connection, str(query), True, len(args))
        self._in_many = True
        try:
            return super().executemany(query, args)
        finally:
            self._in_many = False


COUNTING_CONNECT_ARGS: dict[str, dict[str, Any]] = {
    "sqlite": {"factory": _SqliteConnection},
    "postgresql": {"cursor_factory": _PgCursor},
    "mysql": {"cursorclass": _MyCursor},
}


def counting_engine(backend: Backend, **options: Any) -> sa.Engine:
    """The user's engine on the backend's first database, its cursors counting."""
    connect_args = {**COUNTING_CONNECT_ARGS[backend.name], **options.pop("connect_args", {})}
    return sa.create_engine(backend.urls[0], connect_args=connect_args, **options)


@pytest.fixture
def watched(backend: Backend) -> Iterator[Callable[..., sa.Engine]]:
    """``make(**engine_options)``: a counting engine as ``default``, tables made, pool warm."""
    engines: list[sa.Engine] = []

    def make(**options: Any) -> sa.Engine:
        engine = counting_engine(backend, **options)
        engines.append(engine)
        ConnectionManager.configure({"default": {"engine": engine}})
        make_tables(TenantOwner, TenantItem)
        with engine.connect():
            pass
        return engine

    ConnectionManager.reset()
    internals.reset()       # a verdict left by an earlier test would hide the fast path
    try:
        yield make
    finally:
        ConnectionManager.reset()
        for engine in engines:
            engine.dispose()
        TALLY.on = False


# -- the workload ---------------------------------------------------------------------


def workload(p: str) -> list[Any]:
    """Writes and reads through every kind of operation; its statements are EXPECTED_VERBS."""
    out: list[Any] = []
    item = TenantItem.create(name=f"{p}1", qty=1)
    found = TenantItem.find(item.id)
    found.qty = 2
    found.save()
    mine = TenantItem.c.name.like(f"{p}%")
    out.append(TenantItem.where(mine, TenantItem.c.qty >= 2).count())
    out.append(TenantItem.bulk_insert([{"name": f"{p}{i}", "qty": i} for i in (2, 3, 4)]))
    out.append(TenantItem.where(mine).where("qty > ?", 1).order_by("id").pluck("name"))
    TenantItem.insert_or_update({"name": f"{p}2", "qty": 20}, conflict_keys=["name"])
    with TenantItem.transaction():
        out.append(TenantItem.where(name=f"{p}3").update(qty=30))
        with contextlib.suppress(Boom):
            with TenantItem.transaction():
                out.append(TenantItem.where(name=f"{p}4").delete())
                raise Boom
    out.append(TenantItem.where(name=f"{p}1").delete())
    owner = TenantOwner.create(name=p)
    out.append(TenantItem.where(mine).update(owner_id=owner.id))
    loaded = TenantOwner.where(name=p).with_("items").all()
    out.append([(o.name, sorted((i.name, i.qty) for i in o.items())) for o in loaded])
    return out


def expected_results(p: str) -> list[Any]:
    return [1, 3, [f"{p}1", f"{p}2", f"{p}3", f"{p}4"], 1, 1, 1, 3,
            [(p, [(f"{p}2", 20), (f"{p}3", 30), (f"{p}4", 4)])]]


EXPECTED_VERBS = [
    "INSERT", "SELECT", "UPDATE", "SELECT", "INSERT", "SELECT", "INSERT",   # create .. upsert
    "UPDATE", "SAVEPOINT", "DELETE", "ROLLBACK TO",                         # the transaction
    "DELETE", "INSERT", "UPDATE", "SELECT", "SELECT",                       # .. the eager load
]
SQL_VERBS = set(EXPECTED_VERBS)


def run_counted(p: str, backend: Backend) -> Tally:
    """The workload, its results and the independent count checked."""
    with TALLY.recording() as tally:
        assert workload(p) == expected_results(p)
    assert tally.statements() == EXPECTED_VERBS
    if backend.name == "sqlite":      # the counting cursors missed nothing SQLite ran
        rows = [c.verb for c in tally.calls for _ in range(c.rows) if c.verb not in CONTROL]
        assert [verb(s) for s in tally.traced if verb(s) not in CONTROL] == rows
    return tally


def sent_through_sqlalchemy(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Statements that reach the dialect's ``do_execute``/``do_executemany`` (not an event:
    the dialect's own methods, wrapped on this engine's dialect): those SQLAlchemy ran."""
    through: list[str] = []
    dialect = engine.dialect
    for name in ("do_execute", "do_executemany"):
        real = getattr(dialect, name)

        def wrapped(cursor: Any, statement: str, *args: Any, _real: Any = real) -> Any:
            if verb(statement) not in CONTROL:
                through.append(statement)
            return _real(cursor, statement, *args)

        monkeypatch.setattr(dialect, name, wrapped)
    return through


# -- the listeners ----------------------------------------------------------------------

def _compiled_verb(conn: sa.Connection, clauseelement: Any) -> str:
    return verb(str(clauseelement.compile(dialect=conn.dialect)))


def on_engine(event_name: str) -> Callable[[sa.Engine, list[str]], None]:
    def install(engine: sa.Engine, seen: list[str]) -> None:
        if event_name in ("before_execute", "after_execute"):
            def listener(conn: sa.Connection, clauseelement: Any, *rest: Any) -> None:
                seen.append(_compiled_verb(conn, clauseelement))
        else:
            def listener(conn: sa.Connection, cursor: Any, statement: str, *rest: Any) -> None:
                seen.append(verb(statement))
        sa.event.listen(engine, event_name, listener)

    return install


def on_each_connection(engine: sa.Engine, seen: list[str]) -> None:
    """A listener on each new Connection, attached by an ``engine_connect`` listener."""

    def attach(conn: sa.Connection) -> None:
        sa.event.listen(conn, "before_cursor_execute",
                        lambda c, cursor, statement, *rest: seen.append(verb(statement)))

    sa.event.listen(engine, "engine_connect", attach)


def on_dialect(event_name: str) -> Callable[[sa.Engine, list[str]], None]:
    def install(engine: sa.Engine, seen: list[str]) -> None:
        def listener(cursor: Any, statement: str, parameters: Any, context: Any) -> None:
            seen.append(verb(statement))
            return None               # the dialect's own do_execute(many) runs

        sa.event.listen(engine, event_name, listener)

    return install


def on_checkout(engine: sa.Engine, seen: list[str]) -> None:
    """Pool checkout/checkin listeners; ``seen`` is filled from the tally afterwards."""
    sa.event.listen(engine, "checkout", lambda dbapi, record, proxy: TALLY.log.append(
        ("checkout", id(dbapi), -1)) if TALLY.on else None)
    sa.event.listen(engine, "checkin", lambda dbapi, record: TALLY.log.append(
        ("checkin", id(dbapi), -1)) if TALLY.on else None)


def on_echo(engine: sa.Engine, seen: list[str]) -> None:
    engine.echo = True                # what echo=True at create_engine sets; read per connection


# name -> (install, which of the driver's calls the listener must see)
KINDS: dict[str, tuple[Callable[[sa.Engine, list[str]], None], str]] = {
    "before_execute": (on_engine("before_execute"), "all"),
    "after_execute": (on_engine("after_execute"), "all"),
    "before_cursor_execute": (on_engine("before_cursor_execute"), "all"),
    "after_cursor_execute": (on_engine("after_cursor_execute"), "all"),
    "connection_via_engine_connect": (on_each_connection, "all"),
    "do_execute": (on_dialect("do_execute"), "single"),
    "do_executemany": (on_dialect("do_executemany"), "many"),
    "pool_checkout": (on_checkout, "all"),
    "echo": (on_echo, "all"),
}


def sightings(kind: str, seen: list[str], tally: Tally, caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the listener of ``kind`` saw, as statement verbs in order."""
    if kind == "echo":
        logged = [verb(r.getMessage()) for r in caplog.records
                  if r.name.startswith("sqlalchemy.engine")]
        return [v for v in logged if v in SQL_VERBS]
    if kind == "pool_checkout":
        # every statement must run on a connection checked out (through the listener) at the time
        out, held = [], set()
        for what, connection, index in tally.log:
            if what == "checkout":
                held.add(connection)
            elif what == "checkin":
                held.discard(connection)
            elif connection in held:
                out.append(tally.calls[index].verb)
        assert any(what == "checkout" for what, _, _ in tally.log)
        return [v for v in out if v not in CONTROL]
    return [v for v in seen if v not in CONTROL]


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_listener_sees_every_statement(watched, backend, kind, caplog):
    engine = watched(echo=True) if kind == "echo" else watched()
    install, which = KINDS[kind]
    seen: list[str] = []
    install(engine, seen)
    caplog.clear()        # no set_level: an INFO level on sqlalchemy.engine is echo for every engine
    tally = run_counted("u", backend)
    assert sightings(kind, seen, tally, caplog) == tally.statements(which)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_listener_added_mid_run_sees_every_later_statement(watched, backend, kind, caplog,
                                                             monkeypatch):
    engine = watched()
    through = sent_through_sqlalchemy(engine, monkeypatch)
    before = run_counted("u", backend)     # unwatched: the fast path runs some statements
    assert len(through) < len(before.statements()), "nothing ran on the fast path"
    monkeypatch.undo()
    install, which = KINDS[kind]
    seen: list[str] = []
    install(engine, seen)
    caplog.clear()
    tally = run_counted("v", backend)
    assert sightings(kind, seen, tally, caplog) == tally.statements(which)


def test_every_listener_at_once(watched, backend, caplog):
    """All kinds together on one engine; each sees its share of every statement."""
    engine = watched()
    seen = {kind: [] for kind in KINDS}
    for kind, (install, _) in KINDS.items():
        install(engine, seen[kind])
    caplog.clear()
    tally = run_counted("u", backend)
    for kind, (_, which) in KINDS.items():
        assert sightings(kind, seen[kind], tally, caplog) == tally.statements(which), kind
