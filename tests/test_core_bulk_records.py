"""bulk_update(records, fields) and bulk_delete(records): one statement per batch, one transaction."""

import datetime

import pytest

from rhosocial_ar import CrossConnectionError, QueryError, StaleObjectError, ValueNotStorable
from tests.conftest import make_tables
from tests.core_models import Member, Note, club  # noqa: F401 (a fixture)
from tests.models import Account, Doc, User
from tests.test_records import count_statements


def writes(seen):
    return [s for s in seen if s.lstrip().upper().startswith(("UPDATE", "DELETE"))]


@pytest.mark.usefixtures("club")
def test_bulk_update_writes_each_records_values_in_one_statement_per_batch():
    members = Member.order_by("id").all()
    for m in members:
        m.age += 100
        m.status = f"s{m.id}"
    members[2].email = "not written"                   # not among the fields
    seen = count_statements()
    assert Member.bulk_update(members, ["age", "status"], batch_size=2) == 5
    assert len(writes(seen)) == 3                      # 2 + 2 + 1
    rows = Member.order_by("id").pluck("age", "status", "email")
    assert rows[:3] == [(131, "s1", "ann@x.io"), (117, "s2", "bob@x.io"), (145, "s3", None)]
    assert members[0].changed_columns() == {}          # the records are the rows now
    assert members[2].changed_columns() == {"email": "not written"}
    assert Member.bulk_update([], ["age"]) == 0


@pytest.mark.usefixtures("club")
def test_bulk_update_refuses_before_any_sql():
    members = Member.order_by("id").all()
    seen = count_statements()
    for bad, error, match in (
            ((members, []), QueryError, "list of field names"),
            ((members, "age"), QueryError, "list of field names"),
            ((members, ["nope"]), Exception, "no column 'nope'"),
            ((members, ["id"]), QueryError, "primary key"),
            (([Member(name="new")], ["age"]), QueryError, "never saved"),
            (([members[0], members[0]], ["age"]), QueryError, "given twice"),
            (([members[0], Note.find(1)], ["age"]), QueryError, "takes Member records"),
            ((Member.select("id", "name").all(), ["age"]), QueryError, "loaded without age")):
        with pytest.raises(error, match=match):
            Member.bulk_update(*bad)
    members[1].age = 2**40                              # out of the column's range: refused first
    with pytest.raises(ValueNotStorable):
        Member.bulk_update(members, ["age"])
    assert writes(seen) == []


def test_lock_version_and_updated_at(db):
    make_tables(Account, User)
    accounts = [Account.create(owner=o, amount=1) for o in ("a", "b", "c")]
    for a in accounts:
        a.amount = 10
    assert Account.bulk_update(accounts, ["amount"]) == 3
    assert [a.version for a in accounts] == [1, 1, 1]
    assert Account.order_by("id").pluck("version") == [1, 1, 1]
    behind = Account.find(accounts[1].id)
    behind.amount = 5
    behind.save()                                       # version 2 in the database
    for a in accounts:
        a.amount = 20
    with pytest.raises(StaleObjectError, match="1 of 3 Account records were changed"):
        Account.bulk_update(accounts, ["amount"])
    assert Account.order_by("id").pluck("amount") == [10, 5, 10]     # nothing written
    assert [a.version for a in accounts] == [1, 1, 1]                # records as before
    ann = User.create(username="ann", email="a@x.io")
    old = ann.updated_at
    ann.age = 5
    assert User.bulk_update([ann], ["age"]) == 1
    fresh = User.find(ann.id)
    assert ann.updated_at > old and fresh.updated_at == ann.updated_at and fresh.age == 5


def test_bulk_delete(db):
    make_tables(Account, Doc, Member)
    members = [Member.create(name=n) for n in ("a", "b", "c", "d")]
    seen = count_statements()
    assert Member.bulk_delete(members[:3], batch_size=2) == 3
    assert len(writes(seen)) == 2
    assert Member.pluck("name") == ["d"] and all(m.is_new_record for m in members[:3])
    docs = [Doc.create(title=t) for t in ("x", "y")]
    assert Doc.bulk_delete(docs) == 2                   # soft delete: marked
    assert Doc.count() == 0 and Doc.with_deleted().count() == 2
    assert all(isinstance(d.deleted_at, datetime.datetime) for d in docs)
    accounts = [Account.create(owner=o) for o in ("a", "b")]
    Account.find(accounts[0].id).save()                 # unchanged: no new version
    other = Account.find(accounts[0].id)
    other.amount = 3
    other.save()
    with pytest.raises(StaleObjectError):
        Account.bulk_delete(accounts)
    assert Account.count() == 2 and not accounts[1].is_new_record


def test_one_transaction_per_call_and_one_connection(db):
    make_tables(Member)
    with Member.using_connection("secondary"):
        make_tables(Member)
        remote = Member.create(name="r")
    local = Member.create(name="l")
    with pytest.raises(CrossConnectionError):
        Member.bulk_update([local, remote], ["age"])
    with Member.transaction():
        local.age = 9
        Member.bulk_update([local], ["age"])
        with pytest.raises(KeyError):
            with Member.transaction():
                Member.bulk_delete([local])
                raise KeyError("undo")
        assert not local.is_new_record                  # the savepoint's rollback restored it
    assert Member.find(local.id).age == 9


def test_typed_columns_round_trip(db):
    import decimal

    from tests.models import Event, Status

    make_tables(User, Event)
    users = [User.create(username=f"u{i}", email=f"{i}@x.io") for i in range(3)]
    for i, u in enumerate(users):
        u.status, u.balance, u.profile = Status.banned, decimal.Decimal(f"{i}.25"), {"n": i}
    assert User.bulk_update(users, ["status", "balance", "profile"]) == 3
    assert User.order_by("id").pluck("status", "balance", "profile") == [
        (Status.banned, decimal.Decimal(f"{i}.25"), {"n": i}) for i in range(3)]
    at = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456)
    events = [Event.create(name=f"e{i}", at=at) for i in range(2)]
    for e in events:
        e.at, e.day, e.active, e.score = at.replace(year=2025), at.date(), False, 1.5
    assert Event.bulk_update(events, ["at", "day", "active", "score"]) == 2
    assert Event.order_by("id").pluck("at", "day", "active", "score") == [
        (at.replace(year=2025), at.date(), False, 1.5)] * 2
