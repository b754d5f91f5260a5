"""Records built from rows: filled on the model's twin, or through descriptors, alike."""

from __future__ import annotations

import datetime
import decimal
from typing import Any, ClassVar

import pytest
from pydantic import ConfigDict, PrivateAttr

from rhosocial_ar import ActiveRecord, IntegerPKMixin
from rhosocial_ar.fastpath import execution, loading
from tests.conftest import make_tables
from tests.models import Event, Status, User


class Loose(IntegerPKMixin, ActiveRecord):
    """Assignments not validated: pydantic changes ``__dict__`` in place."""

    model_config = ConfigDict(validate_assignment=False)
    __table_name__ = "loose"
    id: int | None = None
    name: str


class Ticket(IntegerPKMixin, ActiveRecord):
    """Private attributes: pydantic's constructors give each record their defaults."""

    __table_name__ = "tickets"
    id: int | None = None
    name: str
    _token: str = PrivateAttr(default="unset")
    _seen: list[str] = PrivateAttr(default_factory=list)


class Announced(IntegerPKMixin, ActiveRecord):
    """A base with its own ``__init_subclass__``: it must never hear of a twin."""

    __abstract__ = True
    born: ClassVar[list[type]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Announced.born.append(cls)


class Herald(Announced):
    __table_name__ = "heralds"
    id: int | None = None
    name: str


def state(record: Any) -> tuple[Any, ...]:
    """What a loaded record is made of, beside its values (in order: dumps follow it)."""
    return (type(record), list(record.__dict__.items()), record.model_fields_set,
            record._ar_saved == record.__dict__, record._ar_saved is record.__dict__,
            record._ar_origin, record._ar_relations, record.__pydantic_extra__,
            record.__pydantic_private__)


def load_both_ways(monkeypatch: pytest.MonkeyPatch, load: Any, *models: Any) -> tuple[Any, Any]:
    """``load()`` with the twins, then with every model filled through descriptors."""
    with_twin = load()
    with monkeypatch.context() as patch:
        patch.setattr(loading, "_make_twin", lambda model: None)
        patch.setattr(execution, "_prepared", {})     # statements keep their loaders
        for model in models:
            patch.setattr(model.__ar_meta__, "loaders", {})
        without = load()
        assert all(loading._TWIN in m.__ar_meta__.loaders for m in models)
        assert not any(m.__ar_meta__.loaders[loading._TWIN] for m in models)
    return with_twin, without


def test_records_filled_on_the_twin_are_those_filled_through_descriptors(db, monkeypatch):
    make_tables(User, Event, Loose)
    at = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000)
    for i in range(3):
        User.create(username=f"u{i}", email=f"u{i}@x", age=20 + i, status=Status.banned,
                    balance=decimal.Decimal("2.50"), profile={"tags": [i]})
        Event.create(name=f"e{i}", at=at, day=at.date(), active=bool(i % 2), score=i / 2)
        Loose.create(name=f"l{i}")

    def load() -> list[Any]:
        return [*User.order_by("id").all(), *User.select("id", "profile").order_by("id").all(),
                *Event.order_by("id").all(), *Loose.order_by("id").all()]

    with_twin, without = load_both_ways(monkeypatch, load, User, Event, Loose)
    assert len(with_twin) == 12
    assert [state(r) for r in with_twin] == [state(r) for r in without]
    assert with_twin == without
    assert {type(r) for r in with_twin} == {User, Event, Loose}
    # the twin was used, and only it knows it: every record is its model's own
    assert all(m.__ar_meta__.loaders[loading._TWIN] in m.__subclasses__()
               for m in (User, Event, Loose))
    user, partial, loose = with_twin[0], with_twin[3], with_twin[9]
    assert user._ar_saved is user.__dict__                 # the snapshot, shared
    assert loose._ar_saved is not loose.__dict__           # in-place changes need a copy
    assert partial.model_fields_set == {"id", "profile"}
    assert user.model_fields_set == set(User.model_fields)


def test_records_filled_on_the_twin_track_changes_and_save(db):
    make_tables(User, Loose)
    User.create(username="ann", email="a@x", age=30)
    Loose.create(name="old")
    user, loose = User.find_by(username="ann"), Loose.find_by(name="old")
    assert (user.changed_columns(), loose.changed_columns()) == ({}, {})
    user.age = 31
    loose.name = "new"                                      # no validation: in place
    assert (user.changed_columns(), loose.changed_columns()) == ({"age": 31}, {"name": "new"})
    with pytest.raises(ValueError):
        user.age = "not a number"                           # still validated
    assert user.save() and loose.save()
    assert (User.find_by(username="ann").age, Loose.find(loose.id).name) == (31, "new")
    assert (user.changed_columns(), loose.changed_columns()) == ({}, {})


def test_a_model_with_its_own_init_subclass_is_filled_without_a_twin(db):
    make_tables(Herald)
    Herald.create(name="h")
    born = list(Announced.born)
    found = Herald.all()
    assert [(type(h), h.name, h.is_new_record) for h in found] == [(Herald, "h", False)]
    assert Herald.__ar_meta__.loaders[loading._TWIN] is None
    assert Announced.born == born == [Herald]
    assert Herald.__subclasses__() == []


def test_loaded_records_have_their_private_attributes_defaults(db, monkeypatch):
    make_tables(Ticket)
    made = [Ticket.create(name=f"t{i}") for i in range(2)]
    with_twin, without = load_both_ways(monkeypatch, lambda: Ticket.order_by("id").all(), Ticket)
    for loaded in (with_twin, without):
        assert [r.__pydantic_private__ for r in loaded] == [m.__pydantic_private__ for m in made]
        assert [r._token for r in loaded] == ["unset", "unset"]
        loaded[0]._seen.append("a")          # a default_factory's value is each record's own
        assert (loaded[0]._seen, loaded[1]._seen) == (["a"], [])
        loaded[1]._token = "kept"            # not a column: nothing to save
        assert loaded[1].changed_columns() == {}
