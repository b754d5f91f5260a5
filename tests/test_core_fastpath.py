"""The new spellings reuse one prepared statement per shape on the fast path, whatever the values."""

import pytest
import sqlalchemy as sa

from rhosocial_ar.fastpath import execution
from tests.core_models import Member, Note, club  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("club")
c, n = Member.c, Note.c


def prepared_by(run, values):
    """How many statements the fast path prepared while ``run(v)`` ran for every value."""
    before = len(execution._prepared)
    results = [run(v) for v in values]
    return len(execution._prepared) - before, results


def test_grouped_rows_aggregates_and_counts():
    grew, results = prepared_by(
        lambda low: Member.where(c.age >= low).select("status", n=sa.func.count())
        .group_by("status").having(sa.func.count() >= 1).order_by("status").rows(), (18, 40, 50))
    assert grew == 1 and [len(r) for r in results] == [2, 1, 1]
    grew, results = prepared_by(
        lambda s: Member.where(status=s).aggregate(n=sa.func.count(), top=sa.func.max(c.age)),
        ("active", "banned"))
    assert grew == 1 and results == [{"n": 3, "top": 31}, {"n": 2, "top": 60}]
    grew, results = prepared_by(lambda s: Member.where(status=s).count("email", distinct=True),
                                ("active", "banned"))
    assert grew == 1 and results == [3, 1]


def test_computed_attributes_joins_and_eager_conditions():
    grew, results = prepared_by(
        lambda name: Member.where(name=name).annotate(later=c.age + 10).all()[0].later,
        ("ann", "bob", "cyd"))
    assert grew == 1 and results == [41, 27, 55]

    def drafts_of(name):
        drafts = Note.__table__.alias("drafts")
        return (Member.left_join(drafts, (drafts.c.member_id == c.id) & ~drafts.c.published)
                .where(name=name).pluck(drafts.c.title))
    grew, results = prepared_by(drafts_of, ("ann", "bob"))
    assert grew == 1 and results == [["a2"], ["b1"]]
    grew, results = prepared_by(
        lambda flag: [len(m.notes()) for m in Member.order_by("id").with_(
            ("notes", lambda q: q.where(published=flag))).all()], (True, False))
    assert grew == 2 and results == [[2, 0, 0, 2, 0], [1, 1, 0, 0, 1]]   # members, notes


def test_bulk_update_per_batch_size():
    members = Member.order_by("id").all()
    for m in members:
        m.age += 1
    grew, _ = prepared_by(lambda batch: Member.bulk_update(members, ["age"], batch_size=batch),
                          (2, 2))
    assert grew == 2          # a batch of 2 and the last of 1, then both reused
