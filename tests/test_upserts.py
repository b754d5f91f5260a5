"""Single-statement upserts and bulk inserts on every backend."""

import pydantic
import pytest

from rhosocial_ar import QueryError, UnknownColumnError
from tests.conftest import make_tables
from tests.models import Stat, User
from tests.test_records import count_statements


def writes(sql):
    return [s for s in sql if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]


def test_insert_or_update_is_one_statement(db):
    make_tables(Stat)
    sql = count_statements()
    Stat.insert_or_update({"user_id": 1, "visits": 1, "label": "a"}, conflict_keys=["user_id"])
    Stat.insert_or_update({"user_id": 1, "visits": 5, "label": "b"}, conflict_keys=["user_id"])
    assert len(writes(sql)) == 2
    assert Stat.count() == 1
    row = Stat.find(1)
    assert (row.visits, row.label) == (5, "b")


def test_update_columns_limits_what_changes(db):
    make_tables(Stat)
    Stat.create(user_id=1, visits=1, label="keep")
    Stat.insert_or_update({"user_id": 1, "visits": 9, "label": "lost"},
                          conflict_keys=["user_id"], update_columns=["visits"])
    row = Stat.find(1)
    assert (row.visits, row.label) == (9, "keep")


def test_bulk_upsert_one_statement_per_batch(db):
    make_tables(Stat)
    Stat.bulk_insert([{"user_id": i, "visits": 0} for i in range(0, 50)])
    sql = count_statements()
    rows = [{"user_id": i, "visits": i} for i in range(25, 125)]
    assert Stat.bulk_insert_or_update(rows, conflict_keys=["user_id"], batch_size=30) == 100
    assert len(writes(sql)) == 4           # 100 rows in batches of 30
    assert Stat.count() == 125
    assert Stat.find(30).visits == 30 and Stat.find(10).visits == 0
    assert Stat.sum("visits") == sum(range(25, 125))


def test_upsert_keeps_created_at_and_uses_unique_keys(db):
    make_tables(User)
    first = User.create(username="ann", email="old@x")
    User.insert_or_update({"username": "ann", "email": "new@x"}, conflict_keys=["username"])
    again = User.find(first.id)
    assert again.email == "new@x"
    assert again.created_at == first.created_at
    assert User.count() == 1


def test_bulk_insert(db):
    make_tables(User)
    sql = count_statements()
    assert User.bulk_insert(
        [{"username": f"u{i}", "email": "e"} for i in range(2500)], batch_size=1000) == 2500
    assert User.count() == 2500
    assert len(writes(sql)) <= 3 or db.name == "sqlite"   # executemany per batch
    assert all(u.created_at is not None for u in User.limit(3).all())
    assert User.bulk_insert([]) == 0


def test_bad_upsert_input_writes_nothing(db):
    make_tables(Stat)
    Stat.create(user_id=1, visits=1)
    sql = count_statements()
    with pytest.raises(pydantic.ValidationError):
        Stat.bulk_insert_or_update([{"user_id": 2, "visits": 1}, {"user_id": 3, "visits": "x"}],
                                   conflict_keys=["user_id"])
    with pytest.raises(pydantic.ValidationError):
        Stat.bulk_insert([{"user_id": 2}, {"user_id": "three"}])
    with pytest.raises(UnknownColumnError):
        Stat.insert_or_update({"user_id": 2}, conflict_keys=["nope"])
    with pytest.raises(QueryError):
        Stat.insert_or_update({"user_id": 2}, conflict_keys="user_id")
    with pytest.raises(pydantic.ValidationError):
        Stat.insert_or_update({"user_id": 2, "bogus": 1}, conflict_keys=["user_id"])
    assert writes(sql) == []
    assert Stat.count() == 1


def test_bulk_upsert_on_the_fast_path_sends_sqlalchemys_statement_per_batch(db):
    # counted at the DB-API cursor (a listener would switch the fast path off); on psycopg2
    # the rows' SQL is made from the one-row upsert, and must be what SQLAlchemy compiles
    from bench import counting
    from rhosocial_ar import ConnectionManager, bulk, get_connection
    from rhosocial_ar.fastpath import execution

    cursors = {"sqlite": {"factory": counting.SqliteConnection},
               "postgresql": {"cursor_factory": counting.psycopg2_cursor_class()},
               "mysql": {"cursorclass": counting.pymysql_cursor_class()}}
    ConnectionManager.configure("counted", {**db.config(0), "connect_args": cursors[db.name]})
    with Stat.using_connection("counted"):
        make_tables(Stat)
        Stat.bulk_insert([{"user_id": i, "visits": 0, "label": "old"} for i in range(0, 50)])
        counting.COUNTER.reset()
        rows = [{"user_id": i, "visits": i, "label": "new"} for i in range(25, 125)]
        assert Stat.bulk_insert_or_update(rows, conflict_keys=["user_id"], batch_size=40) == 100
        sent = [str(sql) for sql in counting._LOG if "INSERT" in str(sql)]
        assert Stat.count() == 125
        assert Stat.find(30).label == "new" and Stat.find(10).label == "old"
        assert Stat.sum("visits") == sum(range(25, 125))
    if db.name != "postgresql":
        return
    dialect = get_connection("counted").engine.dialect
    names = ("user_id", "visits", "label")
    expected = []
    for count in (40, 40, 20):
        stmt, keys = bulk._upsert_statement(Stat.__ar_meta__, dialect, names, ["user_id"],
                                            ("visits", "label"), count)
        expected.append(execution._prepare(stmt, dialect, keys).sql)
    assert sent == expected
