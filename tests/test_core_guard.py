"""update()/delete() without where() must say all_rows(); otherwise QueryError before any SQL."""

import pytest

from rhosocial_ar import QueryError
from tests.conftest import make_tables
from tests.core_models import Member, club  # noqa: F401 (a fixture)
from tests.models import Doc
from tests.test_records import count_statements


@pytest.mark.usefixtures("club")
def test_bare_writes_are_refused_before_any_sql():
    seen = count_statements()
    for write in (lambda: Member.query().delete(), lambda: Member.query().hard_delete(),
                  lambda: Member.query().update(age=1), lambda: Member.order_by("id").delete(),
                  lambda: Member.using("default").update(status="x"),
                  lambda: Member.with_deleted().delete()):
        with pytest.raises(QueryError, match=r"without a condition would change every row"):
            write()
    with pytest.raises(QueryError, match=r"Member.all_rows\(\).update\(...\)"):
        Member.query().update(age=1)
    assert seen == []
    assert Member.count() == 5 and Member.where(age=1).count() == 0


@pytest.mark.usefixtures("club")
def test_all_rows_says_every_row():
    assert Member.all_rows().update(age=7) == 5
    assert Member.where(age=7).count() == 5
    assert Member.query().all_rows().all_rows().update(status="x") == 5   # said twice: once
    assert Member.all_rows().where(name="ann").delete() == 1              # with a where too
    assert Member.all_rows().count() == 4 and len(Member.all_rows().all()) == 4
    assert Member.all_rows().delete() == 4
    assert Member.count() == 0


def test_soft_delete_models(db):
    make_tables(Doc)
    for title in ("a", "b", "c"):
        Doc.create(title=title)
    with pytest.raises(QueryError, match=r"Doc: delete\(\) without a condition"):
        Doc.query().delete()
    with pytest.raises(QueryError, match=r"Doc: hard_delete\(\) without a condition"):
        Doc.with_deleted().hard_delete()
    assert Doc.all_rows().delete() == 3                 # marks them
    assert Doc.count() == 0 and Doc.with_deleted().count() == 3
    assert Doc.only_deleted().hard_delete() == 3        # the deleted ones: a condition itself
    assert Doc.with_deleted().count() == 0
