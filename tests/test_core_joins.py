"""join()/left_join() by relation and by explicit ON condition, aliases, joined columns."""

import pytest
import sqlalchemy as sa

from rhosocial_ar import ActiveRecord, CrossConnectionError, IntegerPKMixin, QueryError
from tests.core_models import Member, Note, club  # noqa: F401 (a fixture)
from tests.test_records import count_statements

pytestmark = pytest.mark.usefixtures("club")
c, n = Member.c, Note.c


class Faraway(IntegerPKMixin, ActiveRecord):
    __table_name__ = "core_faraway"
    __connection__ = "secondary"
    id: int | None = None
    member_id: int = 0


def test_left_join_by_relation_keeps_members_without_notes():
    rows = (Member.left_join("notes").select("name", notes=sa.func.count(n.id))
            .group_by("name").order_by("name").rows())
    assert rows == [{"name": "ann", "notes": 3}, {"name": "bob", "notes": 1},
                    {"name": "cyd", "notes": 0}, {"name": "dee", "notes": 2},
                    {"name": "eve", "notes": 1}]
    inner = Member.join("notes").select("name", notes=sa.func.count(n.id)).group_by("name")
    assert len(inner.rows()) == 4
    lonely = Member.left_join("notes").where(n.id.is_(None)).pluck("name")
    assert lonely == ["cyd"]


def test_join_on_an_explicit_condition_and_an_alias():
    published = (Member.join(Note, (n.member_id == c.id) & n.published.is_(True))
                 .select("name", title=n.title).order_by("name", n.title).rows())
    assert [(r["name"], r["title"]) for r in published] == [
        ("ann", "a1"), ("ann", "a3"), ("dee", "d1"), ("dee", "d2")]
    drafts = Note.__table__.alias("drafts")
    rows = (Member.left_join(drafts, (drafts.c.member_id == c.id) & drafts.c.published.is_(False))
            .select("name", drafts=sa.func.count(drafts.c.id)).group_by("name")
            .order_by("name").rows())
    assert [r["drafts"] for r in rows] == [1, 1, 0, 0, 1]
    # the same shape with another alias object: one statement, other values
    again = Note.__table__.alias("drafts")
    q1 = Member.left_join(again, again.c.member_id == c.id).where(name="ann")
    q2 = Member.left_join(drafts, drafts.c.member_id == c.id).where(name="bob")
    assert q1._select_stmt()[0] is q2._select_stmt()[0]
    assert len(q1.all()) == 3 and len(q2.all()) == 1
    annotated = (Member.left_join(drafts, (drafts.c.member_id == c.id) & drafts.c.published.is_(True))
                 .where(name="dee").annotate(title=drafts.c.title).order_by(drafts.c.id).all())
    assert [(m.name, m.title) for m in annotated] == [("dee", "d1"), ("dee", "d2")]


def test_two_aliases_of_one_table():
    first, second = Note.__table__.alias("first"), Note.__table__.alias("second")
    pairs = (Member.join(first, first.c.member_id == c.id)
             .join(second, (second.c.member_id == c.id) & (second.c.id > first.c.id))
             .select("name", a=first.c.title, b=second.c.title).order_by(first.c.id, second.c.id)
             .rows())
    assert [(r["a"], r["b"]) for r in pairs] == [("a1", "a2"), ("a1", "a3"), ("a2", "a3"),
                                                  ("d1", "d2")]


def test_joins_that_cannot_work():
    seen = count_statements()
    with pytest.raises(QueryError, match="has no relation 'posts'"):
        Member.left_join("posts")
    with pytest.raises(QueryError, match="ON condition"):
        Member.join(Note)
    with pytest.raises(QueryError, match="ON condition"):
        Member.join(Note, "member_id = id")
    with pytest.raises(QueryError, match="joins a model, a Table or an alias"):
        Member.join(c.name == "x", c.id == 1)
    with pytest.raises(QueryError, match="group_by"):
        Member.left_join("notes").where(name="ann").delete()
    with pytest.raises(CrossConnectionError, match="Faraway"):
        Member.join(Faraway, Faraway.c.member_id == c.id).all()
    assert seen == []


def test_pluck_columns_of_a_joined_table():
    assert Member.join("notes").where(name="dee").order_by(n.id).pluck(n.title) == ["d1", "d2"]
    assert (Member.left_join("notes").where(name=["bob", "cyd"]).order_by("name")
            .pluck("name", n.title, "name")) == [("bob", "b1", "bob"), ("cyd", None, "cyd")]
    with pytest.raises(QueryError, match="column names or expressions"):
        Member.pluck("name", 3)
