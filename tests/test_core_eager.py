"""Eager loading with conditions: with_(('notes', lambda q: ...)), one query per relation."""

import pytest

from rhosocial_ar import QueryError
from tests.core_models import Member, Note, club  # noqa: F401 (a fixture)
from tests.test_records import count_statements

pytestmark = pytest.mark.usefixtures("club")


def selects(seen):
    return [s for s in seen if s.lstrip().upper().startswith("SELECT")]


def test_a_condition_and_an_order_in_one_query():
    seen = count_statements()
    members = Member.order_by("id").with_(
        ("notes", lambda q: q.where(published=True).order_by("-id"))).all()
    assert len(selects(seen)) == 2                      # members, then the notes of all of them
    titles = {m.name: [n.title for n in m.notes()] for m in members}
    assert titles == {"ann": ["a3", "a1"], "bob": [], "cyd": [], "dee": ["d2", "d1"], "eve": []}
    assert len(selects(seen)) == 2                      # cached: no query per member
    ann = members[0]
    assert ann.notes()[0].member() is ann               # inverse_of still fills the other side
    assert [n.title for n in ann.notes(reload=True)] == ["a1", "a2", "a3"]   # reload: all of them


def test_nested_paths_and_conditions_on_either_level():
    notes = Note.where(published=True).order_by("id").with_(
        ("member", lambda q: q.where(status="active")), "member.notes").all()
    owners = {n.title: n.member() and n.member().name for n in notes}
    assert owners == {"a1": "ann", "a3": "ann", "d1": "dee", "d2": "dee"}
    assert len(notes[0].member().notes()) == 3          # member.notes without a condition
    members = Member.order_by("id").with_(
        "notes", ("notes", lambda q: q.where(title=["a2", "b1"]))).all()
    assert [[n.title for n in m.notes()] for m in members][:2] == [["a2"], ["b1"]]
    eve = Member.where(name="eve").with_(("notes", lambda q: q.select("id", "member_id"))).first()
    assert eve.notes()[0].to_dict() == {"id": 7, "member_id": 5}


def test_conditions_that_cannot_work_are_refused():
    with pytest.raises(QueryError, match="with_\\(\\) takes"):
        Member.with_(("notes",))
    with pytest.raises(QueryError, match="with_\\(\\) takes"):
        Member.with_(("notes", "published"))
    with pytest.raises(QueryError, match="has no relation 'posts'"):
        Member.with_(("posts", lambda q: q))
    with pytest.raises(QueryError, match="must return a query of Note"):
        Member.with_(("notes", lambda q: None)).all()
    with pytest.raises(QueryError, match="limit\\(\\) and offset\\(\\) apply to all owners"):
        Member.with_(("notes", lambda q: q.limit(1))).all()
    with pytest.raises(QueryError, match="must include 'member_id'"):
        Member.with_(("notes", lambda q: q.select("title"))).all()
    with pytest.raises(QueryError, match="two conditions"):
        Member.with_(("notes", lambda q: q), ("notes", lambda q: q.where(id=1))).all()
