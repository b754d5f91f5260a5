"""select(name=expression), group_by(), having(), rows(); computed attributes on records."""

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from rhosocial_ar import CrossConnectionError, QueryError, UnknownColumnError
from tests.core_models import Member, Note, club  # noqa: F401 (a fixture)
from tests.test_records import count_statements

pytestmark = pytest.mark.usefixtures("club")
c = Member.c


def test_grouped_counts_as_dicts():
    rows = (Member.select("status", count=sa.func.count()).group_by("status")
            .order_by("status").rows())
    assert rows == [{"status": "active", "count": 3}, {"status": "banned", "count": 2}]
    assert (Member.select("status", count=sa.func.count()).group_by("status")
            .having(sa.func.count() > 2).rows()) == [{"status": "active", "count": 3}]
    oldest = (Member.where("age > ?", 18).select("status", top=sa.func.max(c.age))
              .group_by("status").order_by(sa.func.max(c.age).desc()).rows())
    assert oldest == [{"status": "banned", "top": 60}, {"status": "active", "top": 31}]


def test_a_grouped_query_is_one_cached_statement_with_new_values():
    def grouped(low):
        return (Member.where(c.age >= low).select("status", n=sa.func.count())
                .group_by("status").having(sa.func.count() >= 1).order_by("status"))
    first, second = grouped(18), grouped(40)
    assert first.rows() == [{"status": "active", "n": 2}, {"status": "banned", "n": 2}]
    assert second.rows() == [{"status": "banned", "n": 2}]
    assert first._select_stmt()[0] is second._select_stmt()[0]
    assert grouped(18).count() == 2                     # the groups
    assert second.count() == 1


def test_group_by_an_expression_and_a_join():
    by_decade = (Member.select(decade=(c.age / 10) * 10, n=sa.func.count())
                 .group_by((c.age / 10) * 10).order_by((c.age / 10) * 10).rows())
    assert [r["n"] for r in by_decade] == [1, 1, 1, 1, 1]
    per_member = (Member.join("notes").where(Note.c.published.is_(True))
                  .select("name", published=sa.func.count(Note.c.id))
                  .group_by("name").order_by("name").rows())
    assert per_member == [{"name": "ann", "published": 2}, {"name": "dee", "published": 2}]


def test_rows_of_an_ungrouped_query():
    assert Member.where(name="bob").select("name", "age").rows() == [{"name": "bob", "age": 17}]
    assert (Member.where(name="bob").select("name", older=c.age + 1).rows()
            == [{"name": "bob", "older": 18}])


def test_computed_attributes_are_read_never_saved():
    notes = (sa.select(sa.func.count()).select_from(Note.__table__)
             .where(Note.c.member_id == c.id).scalar_subquery())
    members = Member.annotate(note_count=notes, later=c.age + 10).order_by("id").all()
    assert [(m.name, m.note_count, m.later) for m in members][:2] == [("ann", 3, 41), ("bob", 1, 27)]
    ann = members[0]
    assert ann.to_dict() == {"id": 1, "name": "ann", "email": "ann@x.io", "status": "active",
                             "age": 31}
    with pytest.raises(ValidationError):
        ann.note_count = 9                              # not a field: refused
    seen = count_statements()
    ann.age = 32
    assert ann.save() == 1
    assert "note_count" not in seen[-1] and "later" not in seen[-1]
    assert Member.find(1).age == 32
    first = Member.annotate(later=c.age + 10).order_by("-age").first()
    assert (first.name, first.later) == ("eve", 70)
    assert Member.where(name="bob").annotate(later=c.age + 10).pluck("name") == ["bob"]
    assert Member.annotate(later=c.age + 10).count() == 5
    partial = Member.select("name", later=c.age + 10).where(name="cyd").first()
    assert partial.to_dict() == {"name": "cyd"} and partial.later == 55


def test_what_cannot_work_is_refused_before_sql():
    seen = count_statements()
    with pytest.raises(QueryError, match="cannot be called 'age'"):
        Member.select("name", age=sa.func.count())
    with pytest.raises(QueryError, match="cannot be called '_x'"):
        Member.annotate(_x=c.age + 1)
    with pytest.raises(QueryError, match="takes a SQLAlchemy expression"):
        Member.select("status", n="count(*)")
    with pytest.raises(UnknownColumnError):
        Member.group_by("nope")
    with pytest.raises(QueryError, match="call group_by\\(\\) first"):
        Member.select(n=sa.func.count()).having(sa.func.count() > 1)
    with pytest.raises(QueryError, match="takes SQLAlchemy expressions"):
        Member.group_by("status").having("count(*) > 1")
    grouped = Member.select("status", n=sa.func.count()).group_by("status")
    with pytest.raises(QueryError, match="gives rows, not records"):
        grouped.all()
    with pytest.raises(QueryError, match="read the groups with rows"):
        grouped.pluck("status")
    with pytest.raises(QueryError, match="group_by"):
        grouped.where(status="x").update(age=1)
    with pytest.raises(QueryError, match="hidden by Member's attribute"):
        Member.annotate(count=sa.func.count()).all()
    assert seen == []


def test_an_expression_on_another_connection(db):
    from rhosocial_ar import ActiveRecord, IntegerPKMixin

    class Remote(IntegerPKMixin, ActiveRecord):
        __table_name__ = "core_remote"
        __connection__ = "secondary"
        id: int | None = None

    with pytest.raises(CrossConnectionError):
        Member.select("status", n=sa.func.count(Remote.c.id)).group_by("status").rows()
