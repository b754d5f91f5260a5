"""Named savepoints: tx.savepoint(name), tx.rollback_to(name), tx.release(name)."""

import pytest

from rhosocial_ar import SavepointError, Transaction
from tests.conftest import make_tables
from tests.core_models import Member
from tests.test_records import count_statements


@pytest.fixture
def members(db):
    make_tables(Member)
    return db


def names():
    return Member.order_by("id").pluck("name")


def test_rollback_to_undoes_only_the_work_since(members):
    with Member.transaction() as tx:
        Member.create(name="ann")
        assert tx.savepoint("before_import") == "before_import"
        bob = Member.create(name="bob")
        ann = Member.find_by(name="ann")
        ann.age = 40
        ann.save()
        tx.rollback_to("before_import")
        assert names() == ["ann"] and Member.find_by(name="ann").age == 0
        assert bob.is_new_record                       # it claims no row that is gone
        assert ann.changed_columns() == {"age": 40}    # its update is pending again
        Member.create(name="cyd")
        tx.rollback_to("before_import")                # the savepoint stays
        Member.create(name="dee")
        tx.release("before_import")
    assert names() == ["ann", "dee"]


def test_savepoints_stack_and_release_keeps_the_work(members):
    with Transaction("default") as tx:
        tx.savepoint("one")
        Member.create(name="ann")
        tx.savepoint("two")
        Member.create(name="bob")
        tx.savepoint("three")
        Member.create(name="cyd")
        tx.rollback_to("two")                          # 'three' goes with it
        with pytest.raises(SavepointError, match=r"no savepoint of that name.*'one', 'two'"):
            tx.rollback_to("three")
        tx.release("one")                              # and 'two' after it; ann stays
        with pytest.raises(SavepointError, match=r"set here: none"):
            tx.release("two")
        tx.savepoint("one")                            # the name is free again
    assert names() == ["ann"]


def test_an_exception_still_rolls_back_the_whole_block(members):
    with pytest.raises(KeyError):
        with Member.transaction() as tx:
            Member.create(name="ann")
            tx.savepoint("s")
            raise KeyError("boom")
    assert names() == []


def test_beside_nested_blocks(members):
    with Member.transaction() as outer:
        Member.create(name="ann")
        outer.savepoint("mark")
        with Member.transaction() as inner:            # SQLAlchemy's own savepoint
            Member.create(name="bob")
            with pytest.raises(SavepointError, match="nested in this one is open"):
                outer.rollback_to("mark")
            inner.savepoint("inner_mark")
            Member.create(name="cyd")
            inner.rollback_to("inner_mark")
        assert names() == ["ann", "bob"]
        outer.rollback_to("mark")                      # undoes the committed inner block too
        assert names() == ["ann"]
    assert names() == ["ann"]


@pytest.mark.parametrize("bad", ["", "1st", "has space", "x;DROP TABLE core_members", "a" * 64,
                                 "sa_savepoint_1", None, 7])
def test_bad_names_are_refused_before_any_sql(members, bad):
    with Member.transaction() as tx:
        seen = count_statements()
        with pytest.raises(SavepointError, match="savepoint name"):
            tx.savepoint(bad)
        assert seen == []


def test_a_name_set_twice_and_a_closed_block(members):
    tx = Member.transaction()
    with pytest.raises(SavepointError, match="not open"):
        tx.savepoint("s")
    with tx:
        tx.savepoint("s")
        with pytest.raises(SavepointError, match="already set"):
            tx.savepoint("s")
    with pytest.raises(SavepointError, match="not open"):
        tx.rollback_to("s")
    with tx:                                           # reopened: a block of its own, no names
        with pytest.raises(SavepointError, match="set here: none"):
            tx.release("s")


def test_the_sql_names_the_savepoint(members):
    with Member.transaction() as tx:
        seen = count_statements()
        tx.savepoint("before_import")
        tx.rollback_to("before_import")
        tx.release("before_import")
    assert [s.upper() for s in seen[:3]] == [
        "SAVEPOINT BEFORE_IMPORT", "ROLLBACK TO SAVEPOINT BEFORE_IMPORT",
        "RELEASE SAVEPOINT BEFORE_IMPORT"]
