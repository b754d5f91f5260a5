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
