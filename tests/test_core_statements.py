"""query.statement / subquery() / cte(), Model.from_statement(), union/intersect/except_."""

import pytest
import sqlalchemy as sa

from rhosocial_ar import ActiveRecord, CrossConnectionError, IntegerPKMixin, QueryError
from tests.core_models import Member, Note, club  # noqa: F401 (a fixture)
from tests.test_records import count_statements

pytestmark = pytest.mark.usefixtures("club")
c = Member.c


class Remote(IntegerPKMixin, ActiveRecord):
    __table_name__ = "core_remote_rows"
    __connection__ = "secondary"
    id: int | None = None
    name: str = ""


def names(records):
    return [r.name for r in records]


def test_the_statement_carries_its_values_into_core():
    adults = Member.where("age >= ?", 18).where(status="active")
    stmt = adults.statement
    assert isinstance(stmt, sa.Select)
    with Member.transaction() as tx:
        assert [r.name for r in tx.sa_connection.execute(stmt.order_by(c.id))] == ["ann", "dee"]
        counted = sa.select(sa.func.count()).select_from(adults.subquery())
        assert tx.sa_connection.execute(counted).scalar_one() == 2
    within = Member.where(c.id.in_(sa.select(Note.c.member_id).where(Note.c.published.is_(True))))
    assert within.order_by("id").pluck("name") == ["ann", "dee"]


def test_from_statement_with_a_cte_a_window_and_a_union():
    active = Member.where(status="active").cte("active")
    records = Member.from_statement(sa.select(active).where(active.c.age > 20).order_by(active.c.id))
    assert names(records) == ["ann", "dee"] and records[0].email == "ann@x.io"
    ranked = sa.select(Member.__table__, sa.func.rank().over(order_by=c.age.desc()).label("rank"))
    by_rank = Member.from_statement(ranked.order_by(c.age.desc()))
    assert [(m.name, m.rank) for m in by_rank] == [
        ("eve", 1), ("cyd", 2), ("ann", 3), ("dee", 4), ("bob", 5)]
    assert "rank" not in by_rank[0].to_dict()
    by_rank[0].age = 61
    assert by_rank[0].save() == 1 and Member.find_by(name="eve").age == 61
    both = sa.union(Member.where(name="bob").statement, Member.where(name="cyd").statement)
    assert sorted(names(Member.from_statement(both))) == ["bob", "cyd"]
    partial = Member.from_statement(sa.select(c.id, c.name).where(c.name == "dee"))
    assert partial[0].to_dict() == {"id": 4, "name": "dee"}


def test_from_statement_checks_before_any_sql(db):
    seen = count_statements()
    with pytest.raises(QueryError, match="takes a Core select"):
        Member.from_statement(sa.text("SELECT * FROM core_members"))
    with pytest.raises(QueryError, match="none of the model's columns"):
        Member.from_statement(sa.select(Note.c.title))
    with pytest.raises(QueryError, match="selects a name twice"):
        Member.from_statement(sa.select(c.id, Note.c.id))
    with pytest.raises(QueryError, match="label every expression"):
        Member.from_statement(sa.select(c.id, c.age + 1))
    with pytest.raises(QueryError, match="'count' would be hidden"):
        Member.from_statement(sa.select(c.id, sa.func.count().over().label("count")))
    with pytest.raises(CrossConnectionError, match="core_remote_rows"):
        Member.from_statement(sa.select(c.id).where(c.name.in_(sa.select(Remote.c.name))))
    assert seen == []


def test_set_operations_between_queries():
    active, young = Member.where(status="active"), Member.where("age < ?", 30)
    assert names(active.union(young).order_by("name").all()) == ["ann", "bob", "dee"]
    assert names(active.intersect(young).order_by("-name").all()) == ["dee", "bob"]
    assert names(active.except_(young).all()) == ["ann"]
    both = active.union_all(young)
    assert both.count() == 5 and len(both.all()) == 5
    assert names(active.union(young, Member.where(name="eve")).order_by("name").limit(2)
                 .offset(2).all()) == ["dee", "eve"]
    assert names(active.union(young).union(Member.where(name="cyd")).order_by("name")) == [
        "ann", "bob", "cyd", "dee"]
    slim = Member.select("id", "name")
    rows = slim.where(age=17).union(slim.where(age=60)).order_by("id").all()
    assert [r.to_dict() for r in rows] == [{"id": 2, "name": "bob"}, {"id": 5, "name": "eve"}]


def test_set_operations_that_cannot_work():
    active = Member.where(status="active")
    with pytest.raises(QueryError, match="one model"):
        active.union(Note.query())
    with pytest.raises(QueryError, match="not its parts"):
        active.union(Member.order_by("id"))
    with pytest.raises(QueryError, match="same columns"):
        active.union(Member.select("id", "name"))
    with pytest.raises(QueryError, match="computed columns"):
        active.union(Member.with_("notes"))
    with pytest.raises(QueryError, match="the same operation"):
        active.union(Member.query()).intersect(Member.query())
    with pytest.raises(CrossConnectionError):
        active.union(Member.using("secondary"))


def test_window_functions_through_the_query():
    ranked = Member.annotate(place=sa.func.rank().over(order_by=c.age.desc())).order_by("-age")
    assert [(m.name, m.place) for m in ranked.all()][:3] == [("eve", 1), ("cyd", 2), ("ann", 3)]
    rows = (Member.select("status", "name", n=sa.func.row_number().over(
        partition_by=c.status, order_by=c.age)).order_by("status", "age").rows())
    assert [(r["status"], r["name"], r["n"]) for r in rows] == [
        ("active", "bob", 1), ("active", "dee", 2), ("active", "ann", 3),
        ("banned", "cyd", 1), ("banned", "eve", 2)]
