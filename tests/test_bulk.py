"""bulk_insert on every backend: validation, grouping, batches, and the two execution paths."""

from __future__ import annotations

import datetime
import decimal
import random

import pydantic
import pytest
import sqlalchemy as sa
from pydantic import field_validator, model_validator

from rhosocial_ar import (
    ActiveRecord,
    ConnectionManager,
    Field,
    IntegerPKMixin,
    OptimisticLockMixin,
    QueryError,
    TimestampMixin,
    get_connection,
)
from rhosocial_ar.fastpath import guard
from tests.conftest import make_tables
from tests.models import Status
from tests.test_records import count_statements


class Reading(IntegerPKMixin, TimestampMixin, OptimisticLockMixin, ActiveRecord):
    __table_name__ = "readings"
    sensor: str = Field(max_length=20)
    at: datetime.datetime
    day: datetime.date | None = None
    value: decimal.Decimal = Field(decimal.Decimal("0"), max_digits=12, decimal_places=4)
    ok: bool = True
    status: Status = Status.active
    notes: dict | None = None
    state: str | None = Field(None, max_length=10, sa_column_kwargs={"server_default": "open"})


COLUMNS = "id, sensor, at, day, value, ok, status, notes, state, created_at, updated_at, version"


def stored(conn_name: str = "default") -> list[tuple]:
    """The rows as the driver returns them, untouched by SQLAlchemy's result processing."""
    with get_connection(conn_name).engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(
            f"SELECT {COLUMNS} FROM readings ORDER BY id")]


def moments(backend: str, count: int) -> list[datetime.datetime]:
    """Datetimes across the range the backend stores, with the edge cases first."""
    rng = random.Random(7)
    low = 1 if backend == "sqlite" else 1000       # MySQL's DATETIME starts at year 1000
    edges = [
        datetime.datetime(2024, 1, 2, 3, 4, 5),             # microsecond 0
        datetime.datetime(2024, 1, 2, 3, 4, 5, 1),
        datetime.datetime(2024, 12, 31, 23, 59, 59, 999999),
        datetime.datetime(low, 1, 1),
        datetime.datetime(9999, 12, 31, 23, 59, 59, 999999),
        datetime.datetime(2024, 10, 27, 1, 30, fold=1),
    ]
    if backend == "sqlite":
        edges += [datetime.datetime(999, 5, 6, 7, 8, 9, 10), datetime.datetime(5, 1, 1, 0, 0, 0, 5)]
    while len(edges) < count:
        edges.append(datetime.datetime(
            rng.randint(low, 9999), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
            rng.randint(0, 59), rng.randint(0, 59), rng.choice([0, rng.randint(0, 999999)])))
    return edges


def reading_rows(backend: str, count: int) -> list[dict]:
    stamp = datetime.datetime(2023, 6, 1, 12, 0, 0, 123456)
    return [
        {"sensor": f"s{i}", "at": at, "day": at.date() if i % 3 else None,
         "value": decimal.Decimal(i) / 8, "ok": i % 2 == 0,
         "status": Status.banned if i % 5 == 0 else Status.active,
         "notes": {"i": i, "tags": ["a", "b"]} if i % 4 == 0 else None,
         "state": "closed" if i % 2 else "new",
         "created_at": stamp, "updated_at": stamp + datetime.timedelta(microseconds=i)}
        for i, at in enumerate(moments(backend, count))
    ]


def test_fast_path_and_listener_path_write_identical_rows(db):
    rows = reading_rows(db.name, 300)                  # the same columns: handled column-wise
    mixed = [{**row, "state": None} if i % 3 else row for i, row in enumerate(rows[:50])]
    mixed += [{**row, "id": 100_000 + i} for i, row in enumerate(rows[50:60])]
    batches = [rows, mixed]
    if db.name == "sqlite":   # an aware value is stored as naive UTC (docs/values.md): both paths
        offset = datetime.timezone(datetime.timedelta(hours=5))
        batches.append([{**rows[1], "at": datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=offset)},
                        {**rows[2], "at": Stamp(2024, 1, 2, 3, 4, 5)}])

    def insert_all() -> None:
        for batch in batches:
            assert Reading.bulk_insert(batch, batch_size=64) == len(batch)

    make_tables(Reading)
    with get_connection().engine.connect() as conn:
        assert not guard.watched(conn)          # nobody watches: the fast path
    insert_all()
    fast = stored()

    seen = count_statements("secondary")
    with Reading.using_connection("secondary"):
        make_tables(Reading)
        seen.clear()
        insert_all()
    assert any(s.startswith("INSERT INTO readings") for s in seen)
    assert stored("secondary") == fast
    assert len(fast) == sum(map(len, batches))

    if db.name == "sqlite":   # byte for byte what SQLAlchemy's DATETIME writes
        assert fast[0][2] == "2024-01-02 03:04:05.000000"
        assert "0999-05-06 07:08:09.000010" in [r[2] for r in fast]
        assert [r[2] for r in fast[-2:]] == ["2024-01-01 22:04:05.000006",
                                            "2024-01-02 03:04:05.000000"]


def test_rows_come_back_as_given(db):
    make_tables(Reading)
    rows = reading_rows(db.name, 40)
    rows[5]["state"] = rows[6]["state"] = None
    Reading.bulk_insert(rows, batch_size=16)
    found = {r.sensor: r for r in Reading.all()}
    assert sorted(r.id for r in found.values()) == list(range(1, 41))
    for row in rows:
        record, expected = found[row["sensor"]], Reading.model_validate(row)
        assert record.at == expected.at and record.day == expected.day
        assert (record.value, record.ok, record.status, record.notes) == (
            expected.value, expected.ok, expected.status, expected.notes)
        assert record.state == (expected.state or "open")     # None: the server default
        assert record.version == 0
    assert found["s5"].id == 39 and found["s7"].id == 6      # None went in a group of its own


def test_timestamps_and_lock_version_are_filled(db):
    make_tables(Reading)
    given = datetime.datetime(2020, 1, 1, 0, 0, 0, 1)
    before = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    Reading.bulk_insert([{"sensor": "a", "at": given},
                         {"sensor": "b", "at": given, "created_at": given, "version": 4}])
    a, b = Reading.order_by("id").all()
    assert a.created_at == a.updated_at and a.created_at >= before - datetime.timedelta(seconds=1)
    assert a.version == 0
    assert b.created_at == given and b.updated_at == a.updated_at and b.version == 4


def test_bad_rows_raise_pydantics_own_error_and_write_nothing(db):
    make_tables(Reading)
    good = reading_rows(db.name, 500)
    at = good[0]["at"]
    for bad in ({"sensor": "x", "at": "not a time"},
                {"sensor": "x" * 21, "at": at},
                {"sensor": "x", "at": at, "bogus": 1},
                {"at": at},
                "a string",
                [("sensor", "x"), ("at", at)]):
        with pytest.raises(pydantic.ValidationError) as expected:
            Reading.model_validate(bad)
        sql = count_statements()
        with pytest.raises(pydantic.ValidationError) as raised:
            Reading.bulk_insert([*good[:300], bad, *good[300:]])
        assert raised.value.title == expected.value.title
        assert raised.value.errors() == expected.value.errors()
        assert [s for s in sql if s.startswith("INSERT")] == []
    assert Reading.count() == 0


def test_records_and_dicts_mixed_keep_their_order(db):
    make_tables(Reading)
    at = datetime.datetime(2024, 5, 6, 7, 8, 9)
    Reading.bulk_insert([{"sensor": "src", "at": at, "day": at.date(), "notes": {"k": 1}}])
    partial = Reading.select("sensor", "at", "value", "ok", "status").first()  # no id, no day...
    assert "id" not in partial.__dict__
    rows = [
        {"sensor": "d1", "at": at},
        Reading(sensor="r1", at=at),
        partial,
        {"sensor": "d2", "at": at},
        Reading(sensor="r2", at=at, created_at=at),
    ]
    assert Reading.bulk_insert(rows, batch_size=1) == 5
    found = Reading.order_by("id").all()
    # rows writing the same columns keep their order; the partial record's columns differ
    assert [r.sensor for r in found] == ["src", "d1", "r1", "d2", "r2", "src"]
    assert {r.state for r in found} == {"open"}
    copy = found[-1]
    assert (copy.day, copy.notes, copy.version) == (None, None, 0)
    assert copy.created_at is not None and found[4].created_at == at
    assert Reading.bulk_insert([Reading(sensor="r3", at=at), Reading(sensor="r4", at=at)]) == 2
    assert Reading.order_by("-id").limit(2).pluck("sensor") == ["r4", "r3"]


def test_rows_with_different_columns_go_in_separate_batches(db):
    make_tables(Reading)
    at = datetime.datetime(2024, 5, 6, 7, 8, 9, 10)
    rows = [{"sensor": f"a{i}", "at": at} for i in range(5)]
    rows[1:1] = [{"id": 1000 + i, "sensor": f"k{i}", "at": at} for i in range(3)]
    rows.append({"sensor": "s", "at": at, "state": "closed"})
    sql = count_statements()
    assert Reading.bulk_insert(rows, batch_size=2) == 9
    inserts = [s for s in sql if s.startswith("INSERT")]
    # without id and state (5 rows: 3 batches), with id (3 rows: 2), with state (1 row: 1)
    assert len(inserts) == 6
    assert [len(s.split("VALUES")[0].split(",")) for s in inserts] == [10, 10, 10, 11, 11, 11]
    found = {r.sensor: r for r in Reading.all()}
    assert [found[f"k{i}"].id for i in range(3)] == [1000, 1001, 1002]
    assert sorted(found[f"a{i}"].id for i in range(5)) == [found["a0"].id + i for i in range(5)]
    assert found["s"].state == "closed" and found["a0"].state == "open"


@pytest.mark.parametrize("size", [0, -1, True, 2.5, "10", None])
def test_batch_size_is_checked(db, size):
    make_tables(Reading)
    with pytest.raises(QueryError):
        Reading.bulk_insert([{"sensor": "a", "at": datetime.datetime(2024, 1, 1)}], batch_size=size)
    assert Reading.count() == 0


def test_batch_size_on_the_fast_path(db):
    make_tables(Reading)
    rows = reading_rows(db.name, 25)
    for size in (1, 10, 25, 1000):
        Reading.bulk_insert(rows, batch_size=size)
    assert Reading.count() == 100
    assert Reading.where(sensor="s24").count() == 4


def test_bulk_insert_sends_one_statement_per_batch(db):
    # counted at the DB-API cursor, as the benchmark counts: a listener would switch
    # the fast path off
    from bench import counting

    cursors = {"sqlite": {"factory": counting.SqliteConnection},
               "postgresql": {"cursor_factory": counting.psycopg2_cursor_class()},
               "mysql": {"cursorclass": counting.pymysql_cursor_class()}}
    ConnectionManager.configure("counted", {**db.config(0), "connect_args": cursors[db.name]})
    rows = reading_rows(db.name, 250)
    with Reading.using_connection("counted"):
        make_tables(Reading)
        counting.COUNTER.reset()
        assert Reading.bulk_insert(rows, batch_size=100) == 250
        assert counting.COUNTER.snapshot()[0] == 3
        sent = [str(sql) for sql in counting._LOG if "INSERT" in str(sql)]
        assert len(sent) == 3 and not any("RETURNING" in sql for sql in sent)   # keys not needed
        stored_rows = {r.sensor: r for r in Reading.all()}
    assert len(stored_rows) == 250
    for row in rows[::37]:
        record, expected = stored_rows[row["sensor"]], Reading.model_validate(row)
        assert (record.at, record.day, record.value, record.status, record.notes) == (
            expected.at, expected.day, expected.value, expected.status, expected.notes)


class Shouted(IntegerPKMixin, ActiveRecord):
    """Field validators: part of the fields' own validation."""

    __table_name__ = "shouted"
    name: str

    @field_validator("name")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class Coded(IntegerPKMixin, ActiveRecord):
    """A model validator after the fields: only the model's own validation runs it."""

    __table_name__ = "coded"
    name: str
    code: str = ""

    @model_validator(mode="after")
    def _code(self) -> Coded:
        if self.code != self.name[:2]:    # the assignment validates the model again
            self.code = self.name[:2]
        return self


class Trimmed(IntegerPKMixin, ActiveRecord):
    """A model validator before the fields."""

    __table_name__ = "trimmed"
    name: str

    @model_validator(mode="before")
    @classmethod
    def _trim(cls, data: dict) -> dict:
        name = data.get("name")
        return {**data, "name": name.strip()} if isinstance(name, str) else data


class Private(IntegerPKMixin, ActiveRecord):
    """pydantic calls model_post_init after validating the fields."""

    __table_name__ = "private"
    name: str

    def model_post_init(self, context: object) -> None:
        self.name = self.name + "!"


@pytest.mark.parametrize(("model", "fields_only"), [
    (Shouted, True), (Coded, False), (Trimmed, False), (Private, False)])
def test_every_row_is_validated_by_the_model(db, model, fields_only):
    assert (model.__ar_meta__._fields_only() is not None) == fields_only
    make_tables(model)
    rows = [{"name": f" ab{i} "} for i in range(5)]
    assert model.bulk_insert(rows) == 5
    expected = [model.model_validate(r).name for r in rows]
    assert [r.name for r in model.order_by("id").all()] == expected
    if model is Coded:
        assert [r.code for r in model.order_by("id").all()] == [" a"] * 5
    with pytest.raises(pydantic.ValidationError):
        model.bulk_insert([{"name": "ok"}, {"name": 3}])
    assert model.count() == 5


class WholeSeconds(sa.types.TypeDecorator):
    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return value.replace(microsecond=0) if isinstance(value, datetime.datetime) else value


class Stamp(datetime.datetime):
    """A datetime subclass: SQLAlchemy formats it from its fields."""


def test_column_processor_matches_sqlalchemys(db):
    from sqlalchemy.dialects import sqlite

    from rhosocial_ar import dialects
    from rhosocial_ar.fastpath import processors

    dialect = get_connection().engine.dialect
    plain = moments("sqlite", 3000)
    aware = [m.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=-3))) for m in plain[:20]]
    odd = [None, datetime.date(999, 1, 2), datetime.date(2024, 2, 29),
           Stamp(2024, 1, 2, 3, 4, 5), *aware]
    types = [
        sa.DateTime(), sa.DateTime(timezone=True), dialects.precise_datetime(),
        sqlite.DATETIME(storage_format="%(year)04d/%(month)02d/%(day)02d %(hour)02d"),
        sqlite.DATETIME(truncate_microseconds=True), WholeSeconds(),
    ]
    for type_ in types:
        process = type_._cached_bind_processor(dialect)
        convert = processors.column_processor(type_, dialect, process)
        if process is None:
            assert convert is None
            continue
        one = processors.bind_processor(type_, dialect, process)   # the single-row path
        for values in (plain, plain + odd, odd, [None] * 3, []):
            assert convert(list(values)) == [process(v) for v in values], type_
            assert [one(v) for v in values] == [process(v) for v in values], type_
    for type_ in (sa.Numeric(10, 2), sa.Boolean(), sa.JSON(), sa.Date(), sa.Enum(Status)):
        process = type_._cached_bind_processor(dialect)
        convert = processors.column_processor(type_, dialect, process)
        values = {
            "Numeric": [decimal.Decimal("1.25"), None, 3],
            "Boolean": [True, False, None],
            "JSON": [{"a": [1]}, None, [1, 2]],
            "Date": [datetime.date(2024, 1, 2), None],
            "Enum": [Status.active, None],
        }[type(type_).__name__]
        if process is None:
            assert convert is None
        else:
            assert convert(values) == [process(v) for v in values]
    if db.name == "sqlite":
        process = sa.DateTime()._cached_bind_processor(dialect)
        convert = processors.column_processor(sa.DateTime(), dialect, process)
        with pytest.raises(TypeError):
            process("2024-01-01")
        with pytest.raises(TypeError):
            convert([*plain[:3], "2024-01-01"])
        with pytest.raises(TypeError):
            processors.bind_processor(sa.DateTime(), dialect, process)("2024-01-01")
