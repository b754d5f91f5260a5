"""Saving, finding, refreshing and deleting records, on every backend."""

import datetime
import decimal

import pydantic
import pytest
import sqlalchemy as sa

from rhosocial_ar import (
    ConnectionManager,
    ConnectionNotFound,
    QueryError,
    RecordNotFound,
    StaleObjectError,
    get_connection,
)
from tests.conftest import make_tables
from tests.models import Account, Doc, Event, Stat, Status, User


def count_statements(conn_name="default"):
    """Collect the SQL sent on a connection (through the engine's events)."""
    seen: list[str] = []
    engine = get_connection(conn_name).engine

    def listener(conn, cursor, statement, params, context, executemany):
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", listener)
    return seen


def test_insert_then_update_changed_columns_only(db):
    make_tables(User)
    u = User(username="ann", email="ann@x.io", age=30)
    assert u.is_new_record
    assert u.save() == 1
    assert not u.is_new_record and isinstance(u.id, int)
    assert u.created_at is not None and u.updated_at == u.created_at

    sql = count_statements()
    u.email = "a@x.io"
    assert u.save() == 1
    update = [s for s in sql if s.lstrip().upper().startswith("UPDATE")]
    assert len(update) == 1
    assert "email" in update[0] and "username" not in update[0] and "age" not in update[0]
    assert u.updated_at >= u.created_at

    sql.clear()
    assert u.save() == 0          # nothing changed: no SQL at all
    assert sql == []

    again = User.find(u.id)
    assert again.email == "a@x.io" and again.age == 30
    assert again.created_at == u.created_at  # microseconds survive on every dialect


def test_types_round_trip(db):
    make_tables(User, Event)
    at = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456)
    e = Event.create(name="launch", at=at, day=datetime.date(2024, 5, 6), active=False, score=1.5)
    loaded = Event.find(e.id)
    assert loaded.at == at and loaded.day == datetime.date(2024, 5, 6)
    assert loaded.active is False and loaded.score == 1.5

    u = User.create(username="bob", email="b@x", status=Status.banned,
                    balance=decimal.Decimal("12.345678"), profile={"tags": ["a", "b"], "n": 1})
    loaded_user = User.find(u.id)
    assert loaded_user.status is Status.banned
    assert loaded_user.balance == decimal.Decimal("12.345678")
    assert loaded_user.profile == {"tags": ["a", "b"], "n": 1}
    assert loaded_user.to_dict()["username"] == "bob"
    assert set(loaded_user.to_dict()) == set(User.model_fields)


def test_to_dict_is_a_copy_of_the_loaded_fields_in_field_order(db):
    make_tables(User)
    made = User.create(username="ann", email="a@x")
    for record in (made, User.find(made.id), User(username="new", email="n@x")):
        found = record.to_dict()
        assert list(found) == [n for n in User.model_fields if n in record.__dict__]
        found["username"] = "changed"
        assert record.username != "changed"       # a copy, not the record's own values
    partial = User.select("id", "email").where(id=made.id).first()
    assert partial.to_dict() == {"id": made.id, "email": "a@x"}
    loaded = User.find(made.id)
    loaded.email = "b@x"
    assert loaded.to_dict()["email"] == "b@x" and list(loaded.to_dict()) == list(User.model_fields)


def test_create_find_find_by_refresh_delete(db):
    make_tables(User)
    ann = User.create(username="ann", email="a@x")
    assert User.find(ann.id).username == "ann"
    assert User.find_by(username="ann").id == ann.id
    assert User.find_by(username="nobody") is None

    User.where(id=ann.id).update(age=41)
    assert ann.age == 0
    assert ann.refresh() is ann and ann.age == 41

    assert ann.delete() == 1
    assert ann.is_new_record
    with pytest.raises(RecordNotFound, match=r"User with id=.* not found"):
        User.find(ann.id)


def test_find_missing_id_raises(db):
    make_tables(User)
    with pytest.raises(RecordNotFound, match="User with id=12345 not found"):
        User.find(12345)
    with pytest.raises(QueryError):
        User.find(1, 2)


def test_wrong_type_rejected_before_any_write(db):
    make_tables(User)
    sql = count_statements()
    with pytest.raises(pydantic.ValidationError):
        User(username="x", email="x", age="not a number")
    with pytest.raises(pydantic.ValidationError):
        User.create(username="x", email="x", age="old")
    u = User.create(username="y", email="y")
    sql.clear()
    with pytest.raises(pydantic.ValidationError):
        u.age = "old"
    assert u.age == 0
    with pytest.raises(pydantic.ValidationError):
        User(username="z", email="z", unknown_field=1)   # typos are not silently dropped
    with pytest.raises(pydantic.ValidationError):
        User.where(id=u.id).update(age="old")
    assert [s for s in sql if not s.upper().startswith(("BEGIN", "SELECT"))] == []
    assert User.count() == 1 and User.find(u.id).age == 0


def test_database_errors_pass_through_unchanged(db):
    make_tables(User)
    User.create(username="dup", email="1")
    with pytest.raises(sa.exc.IntegrityError) as info:
        User.create(username="dup", email="2")
    assert info.value.orig is not None
    assert User.count() == 1


def test_soft_delete(db):
    make_tables(Doc)
    a, b = Doc.create(title="a"), Doc.create(title="b")
    assert a.delete() == 1
    assert a.deleted_at is not None
    assert Doc.pluck("title") == ["b"]
    assert Doc.count() == 1
    assert Doc.with_deleted().count() == 2
    assert Doc.only_deleted().pluck("title") == ["a"]
    with pytest.raises(RecordNotFound):
        Doc.find(a.id)
    a.restore()
    assert Doc.count() == 2
    assert Doc.where(title="b").delete() == 1
    assert Doc.with_deleted().count() == 2 and Doc.count() == 1
    assert b.hard_delete() == 1
    assert Doc.with_deleted().count() == 1


def test_optimistic_lock(db):
    make_tables(Account)
    acct = Account.create(owner="ann", amount=10)
    assert acct.version == 0
    mine, theirs = Account.find(acct.id), Account.find(acct.id)
    mine.amount = 20
    mine.save()
    assert mine.version == 1
    theirs.amount = 99
    with pytest.raises(StaleObjectError, match="changed or deleted by someone else"):
        theirs.save()
    assert theirs.version == 0
    assert Account.find(acct.id).amount == 20
    with pytest.raises(StaleObjectError):
        theirs.delete()
    assert Account.count() == 1


def test_natural_primary_key_and_no_autoincrement(db):
    make_tables(Stat)
    Stat.create(user_id=7, visits=1)
    s = Stat.find(7)
    s.visits = 2
    s.save()
    assert Stat.find(7).visits == 2


def test_record_remembers_its_connection(db):
    make_tables(User)
    with User.using_connection("secondary"):
        make_tables(User)
        User.create(username="far", email="f")
    assert User.count() == 0
    far = User.using("secondary").find_by(username="far")
    far.age = 5
    far.save()                           # back to where it came from
    assert User.using("secondary").find_by(username="far").age == 5
    assert User.count() == 0
    with pytest.raises(ConnectionNotFound):
        User.using("nowhere")
    with pytest.raises(ConnectionNotFound):
        with User.using_connection("nowhere"):
            pass


def test_unknown_connection_on_model(db):
    class Orphan(User):
        __connection__ = "missing"

    with pytest.raises(ConnectionNotFound, match="missing"):
        Orphan.all()
    with pytest.raises(ConnectionNotFound):
        Orphan(username="o", email="o").save()
    ConnectionManager.configure("missing", db.config(1))
    Orphan.create_table()
    assert Orphan.count() == 0


def test_soft_delete_runs_destroy_hooks_in_its_transaction(db):
    from rhosocial_ar import ActiveRecord, IntegerPKMixin, SoftDeleteMixin

    class Memo(IntegerPKMixin, SoftDeleteMixin, ActiveRecord):
        __table_name__ = "memos"
        text: str
        refuse: bool = False

        def after_destroy(self):
            if self.refuse:
                raise ValueError("kept")

    make_tables(Memo)
    memo = Memo.create(text="x", refuse=True)
    memo.text = "pending"
    with pytest.raises(ValueError):
        memo.delete()
    assert Memo.count() == 1 and memo.deleted_at is None      # undone, in memory too
    memo.refuse = False
    memo.save()
    memo.text = "unsaved"
    memo.delete()
    assert Memo.with_deleted().find(memo.id).text == "pending"  # only deleted_at written
    assert memo.changed_columns() == {"text": "unsaved"}


def test_upsert_bumps_the_lock_version(db):
    from rhosocial_ar import ActiveRecord, Field, IntegerPKMixin, OptimisticLockMixin

    class Page(IntegerPKMixin, OptimisticLockMixin, ActiveRecord):
        __table_name__ = "pages"
        slug: str = Field(max_length=20, unique=True)
        body: str

    make_tables(Page)
    page = Page.create(slug="a", body="v0")
    stale = Page.find(page.id)
    page.body = "v1"
    page.save()
    Page.insert_or_update({"slug": "a", "body": "v2"}, conflict_keys=["slug"])
    assert Page.find(page.id).version == 2
    stale.body = "lost"
    with pytest.raises(StaleObjectError):
        stale.save()
    assert Page.find(page.id).body == "v2"
    # many rows at once: existing ones bumped, new ones start at 0 (executemany on MariaDB)
    Page.bulk_insert_or_update([{"slug": "a", "body": "v3"}, {"slug": "b", "body": "new"}],
                               conflict_keys=["slug"])
    assert Page.where(slug=["a", "b"]).order_by("slug").pluck("body", "version") == [
        ("v3", 3), ("new", 0)]


def test_server_defaults_fill_in_when_left_out(db):
    from rhosocial_ar import ActiveRecord, Field, IntegerPKMixin

    class Ticket(IntegerPKMixin, ActiveRecord):
        __table_name__ = "tickets"
        title: str
        state: str | None = Field(None, max_length=10,
                                  sa_column_kwargs={"server_default": "open"})

    make_tables(Ticket)
    t = Ticket.create(title="t")
    assert t.state == "open" and Ticket.find(t.id).state == "open"
    assert Ticket.create(title="u", state="closed").state == "closed"


def test_copies_and_pickles_keep_the_record_state(db):
    import copy
    import pickle

    make_tables(User)
    ann = User.create(username="ann", email="a@x", age=30)
    for twin in (copy.copy(ann), ann.model_copy(), copy.deepcopy(ann),
                 pickle.loads(pickle.dumps(ann))):
        assert not twin.is_new_record and twin == ann
        twin.age = 31
        assert twin.changed_columns() == {"age": 31}
        assert ann.changed_columns() == {}
    built = User.model_validate({"username": "bob", "email": "b@x"})
    assert built.is_new_record and built.save() == 1 and User.count() == 2


def test_a_loaded_record_notices_every_change_and_only_changes(db):
    make_tables(User)
    User.create(username="ann", email="a@x", age=30)
    ann = User.find_by(username="ann")
    assert ann.changed_columns() == {} and ann.save() == 0
    ann.age = 30                                     # the same value: nothing to write
    assert ann.changed_columns() == {}
    ann.email = "new@x"
    assert ann.changed_columns() == {"email": "new@x"}
    assert ann.save() == 1 and ann.changed_columns() == {}
    ann.age = 40
    assert ann.changed_columns() == {"age": 40}
    assert User.find(ann.id).email == "new@x"


def test_a_rolled_back_soft_delete_leaves_the_record_as_loaded(db):
    make_tables(Doc)
    Doc.create(title="kept")
    doc = Doc.find_by(title="kept")
    with pytest.raises(RuntimeError), Doc.transaction():
        doc.delete()
        assert doc.deleted_at is not None
        raise RuntimeError("roll back")
    assert doc.deleted_at is None and doc.changed_columns() == {}
    assert Doc.count() == 1
    doc.title = "edited"
    assert doc.save() == 1 and Doc.find(doc.id).title == "edited"


class Unvalidated(User):
    """Assignments change __dict__ in place: the library must keep its own snapshot."""

    __table_name__ = "unvalidated_users"
    model_config = pydantic.ConfigDict(validate_assignment=False)


def test_change_tracking_without_validate_assignment(db):
    make_tables(Unvalidated)
    Unvalidated.create(username="ann", email="a@x", age=30)
    ann = Unvalidated.find_by(username="ann")
    ann.age = 31
    assert ann.changed_columns() == {"age": 31}
    assert ann.save() == 1 and ann.changed_columns() == {}
    ann.email = "b@x"
    assert ann.changed_columns() == {"email": "b@x"} and ann.save() == 1
    assert (Unvalidated.find(ann.id).age, Unvalidated.find(ann.id).email) == (31, "b@x")
