"""The fast path and SQLAlchemy's own execution give the same results; watchers see all."""

from __future__ import annotations

import datetime
import decimal
import logging

import pytest
import sqlalchemy as sa

from rhosocial_ar import ConnectionManager, get_connection
from rhosocial_ar.fastpath import execution as execution_module
from rhosocial_ar.fastpath import guard
from tests.conftest import make_tables
from tests.models import Event, Status, User


def workload() -> list:
    """Writes and reads through every hot path; returns what they gave back."""
    out = []
    u = User.create(username="ann", email="a@x", age=30, status=Status.banned,
                    balance=decimal.Decimal("1.25"), profile={"k": [1]})
    out.append(u.id)
    u.age = 31
    out.append(u.save())
    found = User.find(u.id)
    out.append(found.to_dict() | {"created_at": None, "updated_at": None})
    at = datetime.datetime(2024, 1, 2, 3, 4, 5, 600000)
    e = Event.create(name="e", at=at, active=False, score=2.5)
    out.append(Event.find(e.id).to_dict())
    out.append([x.id for x in User.where("age > ?", 1).order_by("-id").limit(5).all()])
    out.append(User.pluck("email"))
    out.append(Event.where(active=False).first().to_dict())
    # an IN list: SQLAlchemy renders its placeholders per execution on both paths
    more = [User.create(username=f"in{i}", email="i", age=i) for i in range(3)]
    ids = [m.id for m in more]
    out.append([(x.id, x.age) for x in User.where(id=[ids[0], ids[2], -1]).order_by("id").all()])
    out.append(User.where(id=ids[:2]).update(age=7))
    out.append(User.where("age = ?", 7).pluck("id") == ids[:2])
    # lists between other parameters, of converted values (SQLite's DATETIME), and empty
    out.append(User.where("age >= ?", 0).where(id=ids).order_by("id").limit(2).pluck("id"))
    later = at + datetime.timedelta(days=1)
    Event.create(name="later", at=later, active=True)
    out.append(Event.where(at=[later, at]).order_by("id").pluck("name"))
    out.append(Event.where(name="later", at=[later]).where("score < ?", 9).pluck("name"))
    out.append(User.where(id=[]).all())
    users = User.__table__        # lists in SQLAlchemy expressions: of values, and of row values
    out.append(User.where(users.c.id.in_(ids[1:])).order_by("id").pluck("id"))
    pairs = sa.tuple_(users.c.id, users.c.age).in_([(ids[0], 7), (ids[2], 7)])
    out.append(User.where(pairs).pluck("id"))
    twice = sa.bindparam("twice", 7, type_=sa.Integer)     # one parameter in two places
    out.append(User.where(sa.or_(users.c.age == twice, users.c.id == twice + 1)).pluck("id"))
    # many rows at once: executemany, upserts, and writes by list
    out.append(User.bulk_insert([{"username": f"b{i}", "email": "b", "age": i} for i in range(3)]))
    out.append(User.bulk_insert_or_update(
        [{"username": "b1", "email": "changed", "age": 50}, {"username": "b9", "email": "n"}],
        conflict_keys=["username"]))
    out.append(sorted(User.where(username=["b1", "b9"]).pluck("email")))
    out.append(User.where(username=["b0", "b2"]).delete())
    # literal percent signs beside placeholders, one spelled like a pyformat placeholder
    out.append(User.where("username LIKE ? AND email LIKE '%'", "b%").order_by("id").pluck("age"))
    out.append(User.where("email <> '%(age)s' AND age >= ?", 50).pluck("username"))
    out.append(found.delete())
    out.append(User.count())
    return out


def run_fresh(db) -> list:
    make_tables(User, Event)
    return workload()


def test_both_paths_agree(db, monkeypatch):
    fast = run_fresh(db)
    calls = {"fast": 0}
    fast_sql: list[str] = []
    real_run = execution_module._run

    def counting(sa_conn, prepared, *args, **kwargs):
        calls["fast"] += 1
        fast_sql.append(prepared.sql)
        return real_run(sa_conn, prepared, *args, **kwargs)

    renders = []    # SQLAlchemy's own rendering of IN lists: only the empty one and the pairs
    real_render = sa.sql.compiler.SQLCompiler._process_parameters_for_postcompile

    def rendering(compiled, *args, **kwargs):
        if "pg_catalog" not in compiled.string and "information_schema" not in compiled.string:
            renders.append(compiled.string)   # not the reflection of make_tables()
        return real_render(compiled, *args, **kwargs)

    monkeypatch.setattr(execution_module, "_run", counting)
    monkeypatch.setattr(sa.sql.compiler.SQLCompiler, "_process_parameters_for_postcompile",
                        rendering)
    again = run_fresh(db)
    assert again == fast
    assert calls["fast"] > 5                          # the fast path did run
    assert sum("POSTCOMPILE" in sql for sql in fast_sql) >= 8   # IN lists too
    assert len(renders) == 2, renders
    renders.clear()

    seen: list[str] = []
    sa.event.listen(get_connection().engine, "before_cursor_execute",
                    lambda c, cur, statement, *rest: seen.append(statement))
    calls["fast"] = 0
    slow = run_fresh(db)
    assert calls["fast"] == 0                         # a listener: SQLAlchemy's path
    assert slow == fast
    assert any(s.startswith("INSERT INTO users") for s in seen)
    assert len(renders) >= 10                          # SQLAlchemy rendered every list


def test_a_listener_added_mid_run_sees_every_later_statement(db):
    make_tables(User)
    for i in range(5):
        User.create(username=f"u{i}", email="e")
    seen: list[str] = []
    sa.event.listen(get_connection().engine, "after_cursor_execute",
                    lambda c, cur, statement, *rest: seen.append(statement))
    User.create(username="after", email="e")
    User.find_by(username="after")
    User.find(1)
    User.where(username="u1").all()
    User.where(id=[1, 2]).all()
    User.where(id=[3, 4]).update(age=5)
    User.where(id=[4, 5]).delete()
    kinds = [s.split()[0].upper() for s in seen if not s.upper().startswith(("BEGIN", "COMMIT"))]
    assert kinds == ["INSERT", "SELECT", "SELECT", "SELECT", "SELECT", "UPDATE", "DELETE"]


def test_echo_logging_sees_statements(db, caplog):
    ConnectionManager.configure("echoing", {**db.config(0), "echo": True})
    with User.using_connection("echoing"):
        make_tables(User)
        caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
        caplog.clear()
        User.create(username="logged", email="e")
        User.find_by(username="logged")
    logged = caplog.text
    assert "INSERT INTO users" in logged and "SELECT users.id" in logged


def test_errors_are_sqlalchemys_on_the_fast_path(db):
    make_tables(User)
    User.create(username="dup", email="1")
    with pytest.raises(sa.exc.IntegrityError) as info:
        User.create(username="dup", email="2")
    assert info.value.orig is not None and "dup" not in (info.value.statement or "")
    assert User.count() == 1


def test_watched_agrees_with_sqlalchemys_own_view_of_listeners(db):
    """Every connection event counts, on the engine or on the Engine class, and only while listening."""
    from sqlalchemy.engine import Engine

    engine = get_connection().engine
    events = guard._CONNECTION_EVENTS
    assert {"before_cursor_execute", "after_cursor_execute", "before_execute", "after_execute",
            "begin", "commit"} <= set(events)

    def sqlalchemy_says(conn) -> bool:
        return any(bool(getattr(conn.dispatch, name)) for name in events)

    def listener(*args):
        return None

    with engine.connect() as conn:
        assert guard.watched(conn) is False is sqlalchemy_says(conn)
        for target in (engine, Engine):           # the engine's own, then every engine's
            for name in events:
                sa.event.listen(target, name, listener)
                assert guard.watched(conn) is True is sqlalchemy_says(conn), (target, name)
                sa.event.remove(target, name, listener)
                assert guard.watched(conn) is False is sqlalchemy_says(conn), (target, name)
