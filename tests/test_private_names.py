"""A model's own helpers never collide with the library's: its private names start with ``_ar_``."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, PrivateAttr

from rhosocial_ar import (
    ActiveRecord,
    BelongsTo,
    ConfigurationError,
    HasMany,
    IntegerPKMixin,
    OptimisticLockMixin,
    SoftDeleteMixin,
    StaleObjectError,
    TimestampMixin,
)
from tests.conftest import make_tables

# the six private methods the library's models had before they moved under _ar_
OLD_NAMES = ("_connection", "_insert", "_update", "_pk_params", "_pk_text", "_hard_delete")


def _helper(name: str) -> Any:
    def helper(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.__class__.helper_calls.append(name)
        return 0

    helper.__name__ = name
    return helper


class Ledger(IntegerPKMixin, TimestampMixin, OptimisticLockMixin, ActiveRecord):
    """User helpers named like the library's old private methods, on every write path."""

    __table_name__ = "private_ledgers"
    owner: str
    amount: int = 0
    helper_calls: ClassVar[list[str]] = []
    entries: ClassVar[HasMany[LedgerEntry]] = HasMany(foreign_key="ledger_id", inverse_of="ledger")

    locals().update({name: _helper(name) for name in OLD_NAMES})


class LedgerEntry(IntegerPKMixin, SoftDeleteMixin, ActiveRecord):
    __table_name__ = "private_ledger_entries"
    ledger_id: int
    note: str
    helper_calls: ClassVar[list[str]] = []
    ledger: ClassVar[BelongsTo[Ledger]] = BelongsTo(foreign_key="ledger_id", inverse_of="entries")

    locals().update({name: _helper(name) for name in OLD_NAMES})
    # a user's private attributes with the other names the library once might have used
    _relations: dict[str, Any] = PrivateAttr(default_factory=dict)
    _origin: str = PrivateAttr(default="mine")
    _saved: bool = PrivateAttr(default=False)


def test_user_helpers_with_the_old_private_names_change_nothing(db):
    make_tables(Ledger, LedgerEntry)
    Ledger.helper_calls.clear()
    LedgerEntry.helper_calls.clear()

    ledger = Ledger(owner="ann", amount=5)
    assert ledger.save() == 1                          # INSERT, not the user's _insert
    ledger.amount = 7
    assert ledger.save() == 1                          # UPDATE, not the user's _update
    assert Ledger.find(ledger.id).amount == 7
    assert ledger.version == 1

    stale = Ledger.find(ledger.id)
    ledger.amount = 8
    ledger.save()
    stale.amount = 9
    with pytest.raises(StaleObjectError, match=f"id={ledger.id}"):   # the library's _pk_text
        stale.save()

    entry = LedgerEntry.create(ledger_id=ledger.id, note="first")
    assert entry._origin == "mine" and entry._relations == {} and entry._saved is False
    assert [e.note for e in ledger.entries()] == ["first"]
    assert entry.ledger().id == ledger.id
    entry.note = "changed"
    assert entry.save() == 1
    assert entry.refresh().note == "changed"
    assert entry.delete() == 1                         # soft delete: the library's _update
    assert LedgerEntry.find_by(id=entry.id) is None
    assert entry.hard_delete() == 1                    # the library's _hard_delete
    assert LedgerEntry.with_deleted().count() == 0

    with Ledger.transaction():
        Ledger.create(owner="bob")
    assert ledger.delete() == 1
    assert Ledger.pluck("owner") == ["bob"]
    assert Ledger.helper_calls == [] and LedgerEntry.helper_calls == []


def _library_private_names(model: type) -> set[str]:
    """The private (single underscore) names a model or record has that pydantic's do not."""
    record = model.model_construct()
    names = set(dir(model)) | set(dir(record))
    return {
        n for n in names - set(dir(BaseModel))
        if n.startswith("_") and not n.startswith("__")
    }


def test_every_library_private_name_on_models_and_records_starts_with_ar():
    class Plain(IntegerPKMixin, TimestampMixin, SoftDeleteMixin, OptimisticLockMixin, ActiveRecord):
        __table_name__ = "private_plain"
        name: str
        parent_id: int | None = None
        parent: ClassVar[BelongsTo[Plain]] = BelongsTo(foreign_key="parent_id")
        children: ClassVar[HasMany[Plain]] = HasMany(foreign_key="parent_id")

    private = _library_private_names(Plain)
    assert private and all(n.startswith("_ar_") for n in private), sorted(
        n for n in private if not n.startswith("_ar_"))


@pytest.mark.parametrize("name", ["_ar_insert", "_ar_state", "_ar_anything"])
def test_a_model_may_not_define_a_name_the_library_reserves(name):
    with pytest.raises(ConfigurationError, match="_ar_"):
        type("Clash", (IntegerPKMixin, ActiveRecord), {
            "__module__": __name__, "__annotations__": {"title": str},
            "__table_name__": "private_clash", name: lambda self: 0,
        })
