"""The chainable query on every backend."""

import pytest
import sqlalchemy as sa

from rhosocial_ar import ActiveRecord, Field, QueryError, UnknownColumnError, get_connection
from rhosocial_ar.fastpath import execution
from tests.conftest import make_tables
from tests.models import Doc, User
from tests.test_records import count_statements


@pytest.fixture
def people(db):
    make_tables(User)
    User.bulk_insert(
        {"username": f"u{i:02d}", "email": f"u{i}@{'x' if i % 2 else 'y'}.io", "age": i}
        for i in range(1, 26)
    )
    return db


def test_where_forms(people):
    assert User.where(age=3).pluck("username") == ["u03"]
    assert User.where(age=[1, 2, 30]).order_by("age").pluck("age") == [1, 2]
    assert User.where(profile=None).count() == 25
    assert User.where("age > ? AND age <= ?", 20, 22).pluck("age") == [21, 22]
    assert User.where(User.c.age >= 24).pluck("age") == [24, 25]
    assert User.where(age=5).where(username="u05").count() == 1
    assert User.where(age=5).where(username="u06").count() == 0
    assert User.where("email LIKE ?", "%@x.io").count() == 13


def test_where_values_are_always_bound(people):
    hostile = "u01' OR '1'='1"
    assert User.where("username = ?", hostile).count() == 0
    assert User.where(username=hostile).count() == 0
    sql = count_statements()
    User.where("username = ?", "u01; DROP TABLE users").all()
    assert "DROP" not in sql[-1]
    assert User.count() == 25
    with pytest.raises(QueryError, match="placeholders"):
        User.where("age > ? AND age < ?", 1)


def test_order_limit_offset_first_last(people):
    assert User.order_by("-age").limit(3).pluck("age") == [25, 24, 23]
    assert User.order_by("age desc").offset(2).limit(2).pluck("age") == [23, 22]
    assert User.order_by(User.c.age.desc()).first().age == 25
    assert User.first().username == "u01"
    assert User.last().username == "u25"
    assert User.order_by("-age").last().age == 1
    assert User.where(age=99).first() is None


@pytest.mark.parametrize("bad", ["nope", "id; DROP TABLE users", "age desc; --", "-", ""])
def test_unknown_columns_rejected_before_sql(people, bad):
    sql = count_statements()
    with pytest.raises((UnknownColumnError, QueryError)):
        User.order_by(bad)
    with pytest.raises(UnknownColumnError):
        User.select(bad)
    with pytest.raises(UnknownColumnError):
        User.where(**{bad: 1})
    with pytest.raises(UnknownColumnError):
        User.pluck(bad)
    with pytest.raises(UnknownColumnError):
        User.sum(bad)
    with pytest.raises(UnknownColumnError):
        User.where(age=1).update(**{bad: 1})
    with pytest.raises(UnknownColumnError):
        User.insert_or_update({"username": "n", "email": "e"}, conflict_keys=[bad])
    assert sql == []
    assert User.count() == 25


def test_select_gives_partial_records(people):
    rows = User.select("id", "email").where(age=2).all()
    assert len(rows) == 1
    assert rows[0].email == "u2@y.io"
    with pytest.raises(AttributeError):
        _ = rows[0].username
    rows[0].email = "new@y.io"
    rows[0].save()
    assert User.find_by(age=2).email == "new@y.io"
    assert User.find_by(age=2).username == "u02"


def test_aggregates_and_pluck(people):
    assert User.count() == 25
    assert User.where(age=[1, 2]).exists() is True
    assert User.where(age=99).exists() is False
    assert User.sum("age") == sum(range(1, 26))
    assert User.where("age <= ?", 4).sum("age") == 10
    assert float(User.query().avg("age")) == 13.0
    assert User.query().min("age") == 1 and User.query().max("age") == 25
    assert User.order_by("age").limit(5).count() == 5
    assert User.where(age=[1, 2]).order_by("age").pluck("username", "age") == [
        ("u01", 1), ("u02", 2)]


def test_batch_pages_by_primary_key(people):
    sizes = [len(b) for b in User.where("age > ?", 3).batch(10)]
    assert sizes == [10, 10, 2]
    ids = [u.id for b in User.batch(7) for u in b]
    assert ids == sorted(ids) and len(ids) == 25
    assert [len(b) for b in User.limit(12).batch(5)] == [5, 5, 2]
    # rows deleted while paging are simply not seen, nothing is repeated
    seen = []
    for batch in User.batch(10):
        seen.extend(u.id for u in batch)
        User.where(id=batch[-1].id + 1).delete()
    assert len(seen) == len(set(seen)) == 23
    with pytest.raises(QueryError):
        next(User.order_by("age").batch(5))
    with pytest.raises(QueryError):
        next(User.batch(0))


class Seat(ActiveRecord):
    """A composite primary key, for keyset paging on two columns."""

    __table_name__ = "seats"
    hall: str = Field(primary_key=True, max_length=10)
    number: int = Field(primary_key=True, autoincrement=False)
    taken: bool = False


def test_batch_pages_by_a_composite_key_with_one_statement(db):
    make_tables(Seat)
    rows = [{"hall": hall, "number": n} for hall in ("b", "a", "c") for n in (3, 1, 2, 10)]
    Seat.bulk_insert(rows)
    before = len(execution._prepared)
    pages = [[(s.hall, s.number) for s in page] for page in Seat.where(taken=False).batch(5)]
    assert pages == [[("a", 1), ("a", 2), ("a", 3), ("a", 10), ("b", 1)],
                     [("b", 2), ("b", 3), ("b", 10), ("c", 1), ("c", 2)],
                     [("c", 3), ("c", 10)]]
    # the first page, then one statement for every later page, whatever the last key
    assert len(execution._prepared) - before == 2
    assert [len(p) for p in Seat.where(hall=["a", "c"]).limit(7).batch(3)] == [3, 3, 1]


def test_where_delete_and_update_return_counts(people):
    assert User.where("age > ?", 20).update(status="banned") == 5
    assert User.where(status="banned").count() == 5
    assert User.where(status="banned").delete() == 5
    assert User.count() == 20
    with pytest.raises(QueryError):
        User.order_by("age").limit(1).delete()
    with pytest.raises(QueryError):
        User.where(age=1).update()


def test_raw_query(people):
    found = User.raw_query("SELECT * FROM users WHERE age > ? ORDER BY age", [23])
    assert [u.age for u in found] == [24, 25]
    assert found[0].created_at is not None and not isinstance(found[0].created_at, str)
    by_name = User.raw_query("SELECT id, username FROM users WHERE username = :n", {"n": "u07"})
    assert by_name[0].username == "u07"
    by_name[0].username = "seven"
    by_name[0].save()
    assert User.find_by(username="seven") is not None


def test_to_sql_uses_the_connection_dialect(people):
    sql = User.where(age=3).order_by("-age").limit(2).to_sql()
    assert "ORDER BY users.age DESC" in sql
    if people.name == "sqlite":
        assert "?" in sql
    else:
        assert "%(" in sql
    assert User.where(age=3).using("secondary").to_sql() == User.where(age=3).to_sql()


def test_queries_are_immutable_and_reuse_statements(people):
    base = User.where("age > ?", 10)
    older = base.where("age > ?", 20)
    assert base.count() == 15 and older.count() == 5
    cache = User.__ar_meta__.query_cache
    cache.clear()
    for age in (5, 10, 15):
        User.where("age > ?", age).order_by("id").limit(20).all()
    assert len(cache) == 1


def test_cached_statements_take_each_querys_own_values(people):
    cache = User.__ar_meta__.query_cache
    cache.clear()
    # the same conditions in another order are another statement, with their own parameters
    assert User.where("age > ?", 20).where(username="u22").pluck("age") == [22]
    assert User.where(username="u22").where("age > ?", 21).pluck("age") == [22]
    assert User.where(username="u22").where("age > ?", 22).pluck("age") == []
    assert User.where(age=[3, 4]).where("age < ?", 4).pluck("age") == [3]
    assert User.where(age=[3, 4, 5]).where("age < ?", 5).pluck("age") == [3, 4]
    assert User.where("age BETWEEN ? AND ?", 2, 4).where(age=[4, 9]).pluck("age") == [4]
    shapes = len(cache)
    assert shapes == 4
    # expressions are named by their shape: one statement for both values
    for age in (1, 2):
        assert User.where(User.c.age == age).order_by(User.c.age.desc()).pluck("age") == [age]
    assert len(cache) == shapes + 1
    shapes = len(cache)
    # a rejected order is rejected every time, a parsed one keeps its direction
    for _ in range(2):
        with pytest.raises(QueryError):
            User.order_by("age sideways")
        assert User.order_by(" age  DESC").limit(1).pluck("age") == [25]


def test_soft_deleted_rows_hidden_in_queries(db):
    make_tables(Doc)
    Doc.create(title="keep")
    Doc.create(title="gone").delete()
    assert Doc.pluck("title") == ["keep"]
    assert Doc.where(title="gone").first() is None
    assert Doc.with_deleted().where(title="gone").first() is not None


def test_sqlalchemy_expressions_and_listeners_see_everything(people):
    seen = count_statements()
    User.where(sa.or_(User.c.age == 1, User.c.age == 2)).all()
    assert any("users" in s for s in seen)
    assert get_connection().engine.dialect.name in ("sqlite", "postgresql", "mysql")
