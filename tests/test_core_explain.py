"""query.explain(): the backend's plan as text."""

import datetime

import pytest

from rhosocial_ar import ActiveRecord, IntegerPKMixin
from tests.conftest import make_tables
from tests.core_models import Member, club  # noqa: F401 (a fixture)
from tests.test_records import count_statements


class Stamp(IntegerPKMixin, ActiveRecord):
    """Columns whose converters would choke on plan text (JSON, datetime, bool)."""

    __table_name__ = "core_stamps"
    id: int | None = None
    doc: dict | None = None
    at: datetime.datetime | None = None
    ok: bool = True


@pytest.mark.usefixtures("club")
def test_explain_gives_the_plan_as_text(backend):
    plan = Member.where(status="active").where("age > ?", 18).order_by("-age").explain()
    assert isinstance(plan, str) and plan.strip()
    assert "core_members" in plan
    assert {"sqlite": "SCAN", "postgresql": "Seq Scan", "mysql": "select_type"}[
        backend.name] in plan


@pytest.mark.usefixtures("club")
def test_explain_binds_the_values_and_writes_nothing(backend):
    seen = count_statements()
    hostile = "x'; DELETE FROM core_members; --"
    Member.where(name=hostile).where(name=["a", "b"]).limit(3).explain()
    assert seen[-1].lstrip().upper().startswith("EXPLAIN")
    assert hostile not in seen[-1]
    assert Member.count() == 5


def test_plan_rows_are_not_converted_as_the_selected_columns(db):
    make_tables(Stamp)
    Stamp.create(doc={"a": 1}, at=datetime.datetime(2020, 1, 1))
    for query in (Stamp.select("doc"), Stamp.select("id", "doc", "at", "ok"), Stamp.query(),
                  Stamp.where(doc=None).select("at")):
        assert "core_stamps" in query.explain()


@pytest.mark.usefixtures("club")
def test_explain_of_a_query_with_an_expression_and_a_join(backend):
    plan = Member.join("notes").where(Member.c.age.between(18, 50)).explain()
    assert "core_notes" in plan and "core_members" in plan
