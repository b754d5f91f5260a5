"""Model hooks, including after_commit / after_rollback, on every backend."""

import pytest

from rhosocial_ar import ActiveRecord, IntegerPKMixin, Transaction, get_connection
from tests.conftest import make_tables


class Note(IntegerPKMixin, ActiveRecord):
    __table_name__ = "notes"
    id: int | None = None
    text: str
    fail_in: str | None = None

    def _hook(self, name):
        calls.append((name, self.text))
        if self.fail_in == name:
            raise RuntimeError(f"{name} refused")

    def before_validate(self): self._hook("before_validate")
    def before_save(self): self._hook("before_save")
    def before_create(self): self._hook("before_create")
    def before_update(self): self._hook("before_update")
    def before_destroy(self): self._hook("before_destroy")
    def after_create(self): self._hook("after_create")
    def after_update(self): self._hook("after_update")
    def after_save(self): self._hook("after_save")
    def after_destroy(self): self._hook("after_destroy")
    def after_commit(self): self._hook("after_commit")
    def after_rollback(self): self._hook("after_rollback")


class Audit(IntegerPKMixin, ActiveRecord):
    __table_name__ = "audits"
    id: int | None = None
    entry: str


class AuditedNote(Note):
    """Writes an audit row from its after_save hook, inside the same transaction."""

    __table_name__ = "audited_notes"

    def after_save(self):
        Audit.create(entry=f"saved {self.text}")


calls: list[tuple[str, str]] = []


@pytest.fixture(autouse=True)
def _reset_calls():
    calls.clear()


def names():
    return [c[0] for c in calls]


def test_hook_order_on_create_update_delete(db):
    make_tables(Note)
    n = Note(text="a")
    n.save()
    assert names() == ["before_validate", "before_save", "before_create", "after_create",
                       "after_save", "after_commit"]
    calls.clear()
    n.text = "b"
    n.save()
    assert names() == ["before_validate", "before_save", "before_update", "after_update",
                       "after_save", "after_commit"]
    calls.clear()
    n.delete()
    assert names() == ["before_destroy", "after_destroy", "after_commit"]


@pytest.mark.parametrize("hook", ["before_validate", "before_save", "before_create"])
def test_raising_before_hook_writes_nothing(db, hook):
    make_tables(Note)
    with pytest.raises(RuntimeError, match="refused"):
        Note(text="x", fail_in=hook).save()
    assert Note.count() == 0
    assert "after_save" not in names()


def test_raising_before_update_and_destroy_change_nothing(db):
    make_tables(Note)
    n = Note.create(text="x")
    n.fail_in = "before_update"
    with pytest.raises(RuntimeError):
        n.save()
    assert Note.find(n.id).fail_in is None
    n.fail_in = None
    n.save()
    n.fail_in = "before_destroy"
    with pytest.raises(RuntimeError):
        n.delete()
    assert Note.count() == 1


def test_raising_after_save_rolls_the_write_back(db):
    make_tables(Note)
    note = Note(text="x", fail_in="after_save")
    with pytest.raises(RuntimeError):
        note.save()
    assert Note.count() == 0
    assert note.is_new_record and note.id is None     # it does not claim the lost row
    assert names()[-1] == "after_rollback"
    assert "after_commit" not in names()
    note.fail_in = None
    note.save()                                       # and can simply be saved again
    assert Note.pluck("text") == ["x"]


def test_commit_hooks_wait_for_the_enclosing_transaction(db):
    make_tables(Note)
    with Note.transaction():
        Note.create(text="a")
        Note.create(text="b")
        assert "after_commit" not in names()
    assert [c for c in calls if c[0] == "after_commit"] == [("after_commit", "a"),
                                                            ("after_commit", "b")]
    calls.clear()
    with pytest.raises(ZeroDivisionError):
        with Transaction(get_connection()):
            Note.create(text="c")
            1 / 0
    assert ("after_rollback", "c") in calls and "after_commit" not in names()
    assert Note.count() == 2


def test_savepoint_rollback_fires_after_rollback_for_its_records_only(db):
    make_tables(Note)
    with Note.transaction():
        Note.create(text="outer")
        with pytest.raises(ValueError):
            with Note.transaction():
                Note.create(text="inner")
                raise ValueError
        assert ("after_rollback", "inner") in calls
    assert ("after_commit", "outer") in calls
    assert ("after_commit", "inner") not in calls
    assert Note.pluck("text") == ["outer"]


def test_hook_writes_join_the_same_transaction(db):
    make_tables(AuditedNote, Audit)
    AuditedNote.create(text="x")
    assert Audit.pluck("entry") == ["saved x"]
    with pytest.raises(RuntimeError):
        with AuditedNote.transaction():
            AuditedNote.create(text="y")
            raise RuntimeError("abort")
    assert Audit.pluck("entry") == ["saved x"]      # the hook's write went with it
    assert AuditedNote.count() == 1
