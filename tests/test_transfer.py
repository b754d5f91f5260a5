"""transfer() between two databases of each backend: the maps, paging, moving, composite keys."""

from __future__ import annotations

import datetime
import decimal

import pytest

from rhosocial_ar import ActiveRecord, ConfigurationError, Field, transfer
from tests.conftest import make_tables

AT = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000)


class Ledger(ActiveRecord):
    """The source, on the default connection."""

    __table_name__ = "ledger"
    id: int = Field(primary_key=True, autoincrement=False)
    name: str = Field(max_length=40)
    amount: decimal.Decimal = Field(max_digits=10, decimal_places=2)
    booked_at: datetime.datetime


class Archive(ActiveRecord):
    """The target, on the secondary connection: the same columns and one more."""

    __table_name__ = "ledger_archive"
    __connection__ = "secondary"
    id: int = Field(primary_key=True, autoincrement=False)
    name: str = Field(max_length=40)
    amount: decimal.Decimal = Field(max_digits=10, decimal_places=2)
    booked_at: datetime.datetime
    label: str = ""


class Labels(ActiveRecord):
    """A target keyed by a natural key, without the source's id."""

    __table_name__ = "ledger_labels"
    __connection__ = "secondary"
    label: str = Field(primary_key=True, max_length=40)
    total: decimal.Decimal = Field(max_digits=10, decimal_places=2)


class Seat(ActiveRecord):
    __table_name__ = "transfer_seats"
    hall: str = Field(primary_key=True, max_length=10)
    number: int = Field(primary_key=True, autoincrement=False)
    holder: str = ""


class SeatCopy(Seat):
    __table_name__ = "transfer_seats_copy"
    __connection__ = "secondary"


ROWS = [{"id": i, "name": f"n{i:02d}", "amount": decimal.Decimal(f"{i}.25"),
         "booked_at": AT + datetime.timedelta(minutes=i)} for i in range(1, 12)]


@pytest.fixture
def ledger(db):
    make_tables(Ledger, Archive, Labels)
    Ledger.bulk_insert(ROWS)
    return db


def archived() -> list[tuple]:
    return [(a.id, a.name, a.amount, a.booked_at, a.label) for a in Archive.order_by("id").all()]


def test_moves_the_shared_columns_with_their_types(ledger):
    result = transfer(Ledger.query(), Archive, batch_size=4, delete_source=True, progress=False)
    assert (result.rows, result.batches) == (11, 3)
    assert result.strategy == ("idempotent" if ledger.name == "sqlite" else "two-phase")
    assert archived() == [(r["id"], r["name"], r["amount"], r["booked_at"], "") for r in ROWS]
    assert Ledger.count() == 0


def test_a_map_of_names_and_one_with_functions_copy_the_same(ledger):
    names = {"id": "id", "name": "name", "amount": "amount", "booked_at": "booked_at",
             "label": "name"}
    copied = transfer(Ledger.where("id > ?", 3), Archive, map=names, batch_size=3,
                      progress=False)
    by_names = archived()
    assert copied.rows == 8 and [row[0] for row in by_names] == list(range(4, 12))
    assert all(row[4] == row[1] for row in by_names)
    assert Ledger.count() == 11                                  # a copy keeps the source
    Archive.all_rows().delete()
    with_function = {**names, "label": lambda record: record.name}
    transfer(Ledger.where("id > ?", 3), Archive, map=with_function, batch_size=3,
             progress=False)
    assert archived() == by_names


def test_a_map_without_the_source_key_still_pages_by_it(ledger):
    result = transfer(Ledger.where("id <= ?", 5), Labels, map={"label": "name", "total": "amount"},
                      batch_size=2, delete_source=True, progress=False)
    assert (result.rows, result.batches) == (5, 3)
    assert Labels.order_by("label").pluck("label", "total") == [
        (f"n{i:02d}", decimal.Decimal(f"{i}.25")) for i in range(1, 6)]
    assert Ledger.order_by("id").pluck("id") == list(range(6, 12))


def test_composite_keys_page_and_delete(db):
    make_tables(Seat, SeatCopy)
    seats = [{"hall": hall, "number": n, "holder": f"{hall}{n}"}
             for hall in ("b", "a") for n in (10, 2, 1)]
    Seat.bulk_insert(seats)
    result = transfer(Seat.query(), SeatCopy, batch_size=4, delete_source=True, progress=False)
    assert (result.rows, result.batches) == (6, 2)
    assert SeatCopy.order_by("hall", "number").pluck("hall", "number", "holder") == [
        ("a", 1, "a1"), ("a", 2, "a2"), ("a", 10, "a10"),
        ("b", 1, "b1"), ("b", 2, "b2"), ("b", 10, "b10")]
    assert Seat.count() == 0


def test_bad_maps_are_refused_before_anything_moves(ledger):
    with pytest.raises(ConfigurationError):
        transfer(Ledger.query(), Archive, map={"name": 3}, progress=False)
    with pytest.raises(ConfigurationError):
        transfer(Ledger.query(), Seat, progress=False)           # no column in common
    with pytest.raises(ConfigurationError, match="empty"):
        transfer(Ledger.query(), Archive, map={}, progress=False)
    assert Ledger.count() == 11 and Archive.count() == 0
