"""count(column), count(column, distinct=True), aggregate(name=expression, ...)."""

import decimal

import pytest
import sqlalchemy as sa

from rhosocial_ar import CrossConnectionError, QueryError, UnknownColumnError
from tests.core_models import Member, Note, club  # noqa: F401 (a fixture)
from tests.test_records import count_statements

pytestmark = pytest.mark.usefixtures("club")


def test_count_of_a_column_skips_nulls_and_can_be_distinct():
    assert Member.count() == 5
    assert Member.count("email") == 4                       # cyd has none
    assert Member.count("email", distinct=True) == 3        # eve shares ann's
    assert Member.where(status="active").count("email", distinct=True) == 3
    assert Member.where(status="banned").count("email", distinct=True) == 1
    assert Member.query().count("status", distinct=True) == 2
    assert Member.order_by("age").limit(2).count("email") == 2    # within the page


def test_count_rejects_what_cannot_work():
    seen = count_statements()
    with pytest.raises(UnknownColumnError):
        Member.count("nope")
    with pytest.raises(QueryError, match="needs a column name"):
        Member.count(distinct=True)
    assert seen == []


def test_several_aggregates_in_one_statement():
    c = Member.c
    seen = count_statements()
    totals = Member.where(status="active").aggregate(
        n=sa.func.count(), total=sa.func.sum(c.age), oldest=sa.func.max(c.age),
        emails=sa.func.count(sa.distinct(c.email)))
    assert len(seen) == 1
    assert list(totals) == ["n", "total", "oldest", "emails"]
    assert (totals["n"], int(totals["total"]), totals["oldest"], totals["emails"]) == (3, 70, 31, 3)
    # the same shape with other values: the cached statement, right values
    other = Member.where(status="banned").aggregate(
        n=sa.func.count(), total=sa.func.sum(c.age), oldest=sa.func.max(c.age),
        emails=sa.func.count(sa.distinct(c.email)))
    assert (other["n"], int(other["total"]), other["oldest"], other["emails"]) == (2, 105, 60, 1)
    adults = Member.where(c.age >= 18).aggregate(avg=sa.func.avg(c.age), n=sa.func.count())
    assert adults["n"] == 4 and decimal.Decimal(str(adults["avg"])) == decimal.Decimal("39.5")
    none = Member.where(age=999).aggregate(n=sa.func.count(), top=sa.func.max(c.age))
    assert none == {"n": 0, "top": None}


def test_aggregate_over_a_join_and_its_errors():
    got = Member.join("notes").where(Note.c.published.is_(True)).aggregate(
        notes=sa.func.count(), members=sa.func.count(sa.distinct(Member.c.id)))
    assert got == {"notes": 4, "members": 2}
    with pytest.raises(QueryError, match="at least one"):
        Member.aggregate()
    with pytest.raises(QueryError, match="SQLAlchemy expression"):
        Member.aggregate(n="count(*)")
    with pytest.raises(QueryError, match="remove limit/offset"):
        Member.limit(2).aggregate(n=sa.func.count())


def test_aggregate_naming_another_connections_table(db):
    from rhosocial_ar import ActiveRecord, IntegerPKMixin

    class Elsewhere(IntegerPKMixin, ActiveRecord):
        __table_name__ = "core_elsewhere"
        __connection__ = "secondary"
        id: int | None = None
        n: int = 0

    with pytest.raises(CrossConnectionError):
        Member.aggregate(top=sa.func.max(Elsewhere.c.n))
