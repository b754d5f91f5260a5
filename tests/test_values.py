"""Values are stored exactly or refused, the same on every backend (docs/values.md).

Each test runs on SQLite, PostgreSQL and MariaDB; MariaDB's sessions here
run with ``sql_mode=''``, as on an old install, where the server itself
truncates and clamps instead of refusing.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
import sqlalchemy as sa

from rhosocial_ar import (
    ActiveRecord,
    ConnectionManager,
    Field,
    QueryError,
    UnknownColumnError,
    ValueNotStorable,
    get_connection,
)
from tests.conftest import Backend
from tests.models import Status

D = decimal.Decimal
PLUS_TWO = datetime.timezone(datetime.timedelta(hours=2))


class Item(ActiveRecord):
    __table_name__ = "value_items"
    id: int | None = None
    name: str = ""                                   # VARCHAR(255)
    qty: int = 0                                     # INTEGER: 32 bits
    price: D = D("0")                                # NUMERIC(18, 6)
    # constraints inside the Annotated: pydantic 2.4 refuses them on an optional field's Field()
    big: Annotated[D, Field(max_digits=30, decimal_places=6)] | None = None
    at: datetime.datetime | None = None
    day: datetime.date | None = None
    token: uuid.UUID | None = None
    status: Status = Status.active


NON_STRICT = {"init_command": "SET SESSION sql_mode=''"}


@pytest.fixture
def vdb(backend: Backend) -> Iterator[Backend]:
    """``default`` on the backend; on MariaDB every session in non-strict mode."""
    config: dict[str, Any] = backend.config(0)
    if backend.name == "mysql":
        config["connect_args"] = NON_STRICT
    ConnectionManager.reset()
    ConnectionManager.configure("default", config)
    Item.drop_table()
    Item.create_table()
    try:
        yield backend
    finally:
        ConnectionManager.reset()


def raw_rows() -> list[tuple[Any, ...]]:
    with get_connection().engine.connect() as conn:
        # a raw read: SQLite's exact decimals are text there
        return [(name, qty, D(str(price))) for name, qty, price in conn.execute(
            sa.select(sa.text("name, qty, price")).select_from(sa.text("value_items"))
            .order_by(sa.text("id")))]


# -- 5: fragments bind values as the keyword form does ------------------------------

def test_fragment_values_match_the_keyword_form(vdb: Backend) -> None:
    token = uuid.uuid4()
    at = datetime.datetime(2024, 1, 1, 10)
    Item.create(name="a", at=at, price=D("1.50"), token=token, day=at.date(),
                status=Status.banned)
    Item.create(name="b", at=at + datetime.timedelta(hours=1), price=D("2"), token=uuid.uuid4())
    for column, value in [("at", at), ("price", D("1.50")), ("price", D("1.5")),
                          ("token", token), ("day", at.date()), ("status", Status.banned),
                          ("at", at.replace(tzinfo=datetime.timezone.utc))]:
        keyword = Item.where(**{column: value}).pluck("name")
        fragment = Item.where(f"{column} = ?", value).pluck("name")
        assert keyword == fragment == ["a"], (column, value)
    assert Item.where("price > ? AND at < ?", D("1.6"), at + datetime.timedelta(days=1)) \
        .pluck("name") == ["b"]


def test_a_fragments_statement_is_kept_per_value_type(vdb: Backend) -> None:
    at = datetime.datetime(2024, 1, 1, 10)
    Item.create(name="2024-01-01 10:00:00", at=at)
    cache = Item.__ar_meta__.query_cache
    cache.clear()     # the statements are shared by every backend's run
    before = len(cache)
    assert Item.where("at = ?", at).count() == 1
    assert Item.where("at = ?", at + datetime.timedelta(seconds=1)).count() == 0
    assert len(cache) == before + 1                   # one statement for datetimes, reused
    # a string after a datetime: its own statement, bound as the string it is
    assert Item.where("name = ?", "2024-01-01 10:00:00").count() == 1
    assert Item.where("at = ?", at).count() == 1
    assert len(cache) == before + 2


# -- 6: decimals exactly ---------------------------------------------------------------

def test_decimals_are_stored_exactly(vdb: Backend) -> None:
    first = Item.create(price=D("123456789012.123456"), big=D("9007199254740993"))
    found = Item.find(first.id)
    assert found.price == D("123456789012.123456") and str(found.price) == "123456789012.123456"
    assert found.big == D("9007199254740993") and str(found.big) == "9007199254740993.000000"
    assert Item.where(price=D("123456789012.123456")).count() == 1
    assert Item.where(price=D("123456789012.123457")).count() == 0
    assert Item.where("big = ?", D("9007199254740993")).count() == 1
    assert Item.where("big = ?", D("9007199254740992")).count() == 0
    for value in ("-1.5", "10", "2", "0.000001", "-10.25"):
        Item.create(name=value, price=D(value))
    # compared and ordered by value, not as text
    assert Item.where("price > ? AND price < ?", D("-2"), D("3")).order_by("price") \
        .pluck("name") == ["-1.5", "0.000001", "2"]
    assert Item.order_by("-price").pluck("name")[1:] == ["10", "2", "0.000001", "-1.5", "-10.25"]
    assert Item.min("price") == D("-10.25") and Item.max("price") == D("123456789012.123456")


# -- 7: aware datetimes keep their instant ---------------------------------------------

def test_aware_datetimes_are_stored_as_naive_utc(vdb: Backend) -> None:
    aware = datetime.datetime(2024, 5, 1, 9, 30, tzinfo=PLUS_TWO)
    utc = datetime.datetime(2024, 5, 1, 7, 30)
    record = Item.create(name="a", at=aware)
    assert record.at == utc and record.at.tzinfo is None       # the record holds what is stored
    assert Item.find(record.id).at == utc
    assert record.refresh().at == utc
    assert Item.where(at=aware).count() == Item.where("at = ?", aware).count() == 1
    assert Item.where(Item.c.at == aware).count() == 1

    record.at = aware + datetime.timedelta(hours=1)            # an update converts the same way
    record.save()
    assert record.at == utc + datetime.timedelta(hours=1) == Item.find(record.id).at

    assert Item.where(name="a").update(at=aware) == 1
    Item.bulk_insert([{"name": "b", "at": aware}])
    Item.insert_or_update({"id": 50, "name": "c", "at": aware}, conflict_keys=["id"])
    assert Item.order_by("id").pluck("at") == [utc, utc, utc]


# -- 8: what does not fit is refused, before anything is written -------------------------

TOO_BIG: list[tuple[str, Any]] = [("name", "x" * 300), ("qty", 2 ** 31), ("qty", -(2 ** 31) - 1),
                                  ("price", D(10 ** 12)), ("price", D("1.0000001"))]


def test_the_server_in_non_strict_mode_would_truncate(vdb: Backend) -> None:
    """Why the check is needed: written past the library, MariaDB changes these values."""
    if vdb.name != "mysql":
        pytest.skip("only MariaDB in non-strict mode changes values silently")
    with get_connection().engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO value_items (name, qty, price, status) "
                             "VALUES (:n, :q, :p, 'active')"),
                     {"n": "x" * 300, "q": 2 ** 31, "p": D(10 ** 12)})
    assert raw_rows() == [("x" * 255, 2 ** 31 - 1, D("999999999999.999999"))]


@pytest.mark.parametrize(("column", "value"), TOO_BIG)
def test_save_refuses_what_does_not_fit(vdb: Backend, column: str, value: Any) -> None:
    with pytest.raises(ValueNotStorable, match=f"Item.{column}"):
        Item.create(**{"name": "new", column: value})
    assert raw_rows() == []
    record = Item.create(name="kept", qty=1, price=D("1"))
    setattr(record, column, value)
    with pytest.raises(ValueNotStorable):
        record.save()
    with pytest.raises(ValueNotStorable):
        Item.where(id=record.id).update(**{column: value})
    assert raw_rows() == [("kept", 1, D("1"))]


@pytest.mark.parametrize(("column", "value"), TOO_BIG)
def test_bulk_writes_refuse_what_does_not_fit(vdb: Backend, column: str, value: Any) -> None:
    good = {"id": 1, "name": "a", "qty": 1, "price": D("1")}
    bad = {**good, "id": 2, column: value}
    with pytest.raises(ValueNotStorable):
        Item.bulk_insert([good, bad], batch_size=1)         # the first batch is not sent either
    with pytest.raises(ValueNotStorable):
        Item.bulk_insert_or_update([good, bad], conflict_keys=["id"], batch_size=1)
    with pytest.raises(ValueNotStorable):
        Item.insert_or_update(bad, conflict_keys=["id"])
    assert raw_rows() == []


@pytest.mark.parametrize(("column", "value"), TOO_BIG)
def test_a_bulk_insert_finds_the_one_value_that_does_not_fit(vdb: Backend, column: str,
                                                              value: Any) -> None:
    """Checked a column at a time: one bad value among many that fit, first, last or alone."""
    rows = [{"name": "x" * 255, "qty": 2 ** 31 - 1, "price": D("1")} for _ in range(50)]
    for where in (0, 25, 49):
        bad = [dict(row) for row in rows]
        bad[where][column] = value
        with pytest.raises(ValueNotStorable, match=f"Item.{column}"):
            Item.bulk_insert(bad)
    assert raw_rows() == []
    Item.bulk_insert(rows)                          # every one at the limits: all stored
    assert len(raw_rows()) == 50


def test_values_at_the_limits_are_stored(vdb: Backend) -> None:
    Item.create(name="x" * 255, qty=2 ** 31 - 1, price=D("999999999999.999999"))
    Item.create(name="é" * 255, qty=-(2 ** 31), price=D("-999999999999.999999"))
    assert raw_rows() == [("x" * 255, 2 ** 31 - 1, D("999999999999.999999")),
                          ("é" * 255, -(2 ** 31), D("-999999999999.999999"))]


# -- 9 and 12: pluck and order_by ------------------------------------------------------

def test_pluck_returns_every_requested_position(vdb: Backend) -> None:
    Item.create(name="alpha", qty=3)
    assert Item.pluck("id", "id") == [(1, 1)]
    assert Item.pluck("name", "qty", "name") == [("alpha", 3, "alpha")]
    assert Item.pluck("name") == ["alpha"]


def test_order_by_an_unknown_name_says_so_first(vdb: Backend) -> None:
    with pytest.raises(UnknownColumnError, match="id;"):
        Item.order_by("id; DROP TABLE accounts")
    with pytest.raises(UnknownColumnError):
        Item.order_by("-nope desc")
    with pytest.raises(QueryError, match="direction"):
        Item.order_by("id sideways")
    assert Item.count() == 0
