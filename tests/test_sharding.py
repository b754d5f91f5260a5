"""Shards (sharding.py, fanout.py) on real separate databases.

Two flavours: three SQLite files, and three servers of two kinds started for this
module on their own ports and stopped by pid (tests/servers.py): two PostgreSQL
clusters and a second MariaDB instance. One test shards over five servers: those
three and the PostgreSQL and MariaDB servers the other tests use.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from rhosocial_ar import (
    ActiveRecord,
    BelongsTo,
    ConfigurationError,
    ConnectionManager,
    CrossConnectionError,
    Field,
    HasMany,
    IntegerPKMixin,
    QueryError,
    ShardError,
    Transaction,
    get_connection,
    partial_results,
    request_scope,
    shard_of,
    shard_ranges,
)
from rhosocial_ar.sharding import canonical_bytes, shard_index
from tests.conftest import SERVER_URLS, _missing, require_backend

SHARDS = ["s0", "s1", "s2"]


class Invoice(IntegerPKMixin, ActiveRecord):
    __table_name__ = "shard_invoices"
    __shards__ = SHARDS
    __shard_key__ = "customer_id"
    customer_id: int
    total: int
    note: str | None = None


class Ranged(IntegerPKMixin, ActiveRecord):
    __table_name__ = "shard_ranged"
    __shards__ = SHARDS
    __shard_key__ = "customer_id"
    __shard_by__ = shard_ranges(100, 200)
    customer_id: int


def require_scratch_servers() -> None:
    """Extra servers can be started here (else skip loudly, or fail in CI)."""
    from tests.servers import scratch_mariadb_problem
    from tests.standby import standby_problem

    require_backend("postgresql")
    require_backend("mysql")
    problem = standby_problem() or scratch_mariadb_problem()
    if problem is not None:
        _missing(f"NO EXTRA DATABASE SERVERS POSSIBLE, shard tests on servers did not run: {problem}")


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[str, str, str]]:
    """Two PostgreSQL clusters (prepared transactions on) and a MariaDB instance of our own."""
    require_scratch_servers()
    from tests.servers import scratch_mariadb, scratch_postgresql

    with scratch_postgresql(max_prepared_transactions="10") as one, \
            scratch_postgresql(max_prepared_transactions="10") as two, scratch_mariadb() as three:
        yield one, two, three


@pytest.fixture(params=["sqlite", "servers"])
def shards(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """s0, s1, s2 configured, Invoice's table fresh on each; the flavour."""
    ConnectionManager.reset()
    if request.param == "sqlite":
        require_backend("sqlite")
        ConnectionManager.configure({s: {"url": f"sqlite:///{tmp_path / s}.db"} for s in SHARDS})
    else:
        one, two, three = request.getfixturevalue("clusters")
        ConnectionManager.configure({"s0": {"url": one}, "s1": {"url": three},   # mixed backends
                                     "s2": {"url": two}})
    Invoice.drop_table()
    Invoice.create_table()
    try:
        yield request.param
    finally:
        ConnectionManager.reset()


def seed(customers: int = 12, per: int = 3) -> list[tuple[int, int]]:
    """Invoices of customers 0..n-1; (customer_id, total) of each, totals all distinct."""
    made = []
    for customer in range(customers):
        for i in range(per):
            total = customer * 10 + i
            Invoice.create(customer_id=customer, total=total)
            made.append((customer, total))
    return made


def statements_on(*names: str) -> dict[str, list[tuple[str, Any]]]:
    """The statements each named connection sends from now on (its engine's events)."""
    seen: dict[str, list[tuple[str, Any]]] = {n: [] for n in names}
    for name in names:
        def listener(conn: Any, cursor: Any, statement: str, params: Any, context: Any,
                     executemany: bool, name: str = name) -> None:
            seen[name].append((statement, params))
        sa.event.listen(get_connection(name).engine, "before_cursor_execute", listener)
    return seen


def rows_on(shard: str) -> list[tuple[int, int]]:
    with get_connection(shard).engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(  # type: ignore[misc]
            sa.select(Invoice.c.customer_id, Invoice.c.total)))


# -- the mapping ------------------------------------------------------------------------------


def test_the_hash_is_stable_and_documented() -> None:
    # the values docs/sharding.md gives, so another program can place rows the same way
    assert canonical_bytes(7) == canonical_bytes("7") == b"7"
    assert [shard_index(k, 4) for k in (1, 2, 3, 7, "acme")] == [
        shard_index(k, 4) for k in (1, "2", 3, "7", "acme")]
    assert [shard_index(k, 4) for k in range(10)] == [3, 2, 0, 2, 1, 2, 3, 1, 3, 1]
    assert [shard_index(7, n) for n in (1, 2, 3, 4)] == [0, 1, 1, 1]   # 7 -> 0x7902699be42c8a8e
    with pytest.raises(QueryError, match="float"):
        shard_index(1.5, 4)


def test_appending_a_shard_moves_keys_only_to_it() -> None:
    keys = range(5000)
    before = [shard_index(k, 4) for k in keys]
    after = [shard_index(k, 5) for k in keys]
    moved = [a for b, a in zip(before, after, strict=True) if a != b]
    assert set(moved) == {4}
    assert 0.15 < len(moved) / len(keys) < 0.25          # about 1/5
    assert set(Counter(before).values()) and min(Counter(before).values()) > 1100   # balanced


def test_ranges_and_functions_pick_shards() -> None:
    assert [shard_of(Ranged, k) for k in (0, 99, 100, 199, 200, 10**9)] == [
        "s0", "s0", "s1", "s1", "s2", "s2"]

    class ByParity(IntegerPKMixin, ActiveRecord):
        __table_name__ = "shard_parity"
        __shards__ = ["even", "odd"]
        __shard_key__ = "n"
        __shard_by__ = staticmethod(lambda key: "odd" if key % 2 else "even")
        n: int

    assert shard_of(ByParity, 3) == "odd" and shard_of(ByParity, 4) == "even"


@pytest.mark.parametrize(("attrs", "message"), [
    ({"__shards__": "s0", "__shard_key__": "n"}, "list of distinct connection names"),
    ({"__shards__": ["a", "a"], "__shard_key__": "n"}, "distinct"),
    ({"__shards__": ["a", "b"], "__shard_key__": "nope"}, "no column 'nope'"),
    ({"__shards__": ["a", "b"], "__shard_key__": "n", "__shard_by__": shard_ranges(1, 2)},
     "needs 1 boundaries"),
    ({"__shards__": ["a", "b"], "__shard_key__": "n", "__shard_by__": "modulo"}, "__shard_by__"),
])
def test_a_bad_declaration_fails_at_class_creation(attrs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        type("Bad", (IntegerPKMixin, ActiveRecord), {
            "__annotations__": {"n": int}, "__table_name__": "bad", **attrs})


# -- one shard ----------------------------------------------------------------------------------


def test_writes_and_keyed_reads_go_to_the_keys_shard(shards: str) -> None:
    made = seed()
    for shard in SHARDS:
        expected = sorted(r for r in made if shard_of(Invoice, r[0]) == shard)
        assert rows_on(shard) == expected
        assert Invoice.on_shard(shard).count() == len(expected)
    assert sum(len(rows_on(s)) for s in SHARDS) == len(made)   # each row once

    home = shard_of(Invoice, 5)
    seen = statements_on(*SHARDS)
    assert sorted(Invoice.where(customer_id=5).pluck("total")) == [50, 51, 52]
    found = Invoice.find_by(customer_id=5, total=51)
    assert found is not None and found.total == 51
    found.note = "paid"
    found.save()                                          # back to where it came from
    assert Invoice.where(customer_id=5).where(note="paid").count() == 1
    assert [s for s in SHARDS if seen[s]] == [home]


def test_an_in_list_of_keys_reads_only_their_shards(shards: str) -> None:
    seed()
    wanted = {shard_of(Invoice, 1), shard_of(Invoice, 4)}
    seen = statements_on(*SHARDS)
    assert Invoice.where(customer_id=[1, 4]).count() == 6
    assert {s for s in SHARDS if seen[s]} == wanted


def test_pinning_a_shard(shards: str) -> None:
    seed()
    home = shard_of(Invoice, 3)
    with Invoice.using_connection(home):
        assert Invoice.count() == Invoice.on_shard(home).count()
        Invoice.create(customer_id=3, total=1000)
        other = next(c for c in range(100) if shard_of(Invoice, c) != home)
        with pytest.raises(QueryError, match=f"belongs on shard '{shard_of(Invoice, other)}'"):
            Invoice.create(customer_id=other, total=1001)
    assert Invoice.where(total=1000).count() == 1 and Invoice.where(total=1001).count() == 0
    with pytest.raises(QueryError, match="has no shard 'nope'"):
        Invoice.on_shard("nope")
    record = Invoice.where(customer_id=3).first()
    assert record is not None
    elsewhere = next(s for s in SHARDS if s != home)
    with Invoice.using_connection(elsewhere), pytest.raises(QueryError, match="read from shard"):
        record.delete()
    assert Invoice.where(customer_id=3).count() == 4


def test_operations_that_need_one_shard_say_so(shards: str) -> None:
    seed()
    with pytest.raises(QueryError, match=r"needs one shard: give the shard key \(customer_id"):
        Invoice.raw_query("SELECT * FROM shard_invoices")
    with pytest.raises(QueryError, match="runs on one shard"):
        Invoice.group_by("customer_id").select("customer_id", n=sa.func.count()).rows()
    grouped = (Invoice.where(customer_id=2).group_by("customer_id")
               .select("customer_id", n=sa.func.count()).rows())
    assert grouped == [{"customer_id": 2, "n": 3}]


def test_the_shard_key_of_a_saved_record_cannot_change(shards: str) -> None:
    seed(2)
    record = Invoice.where(customer_id=1).first()
    assert record is not None
    record.customer_id = next(c for c in range(100) if shard_of(Invoice, c) != shard_of(Invoice, 1))
    with pytest.raises(QueryError, match="cannot change"):
        record.save()
    assert Invoice.where(customer_id=1).count() == 3


# -- fan-out ------------------------------------------------------------------------------------


def test_order_limit_offset_are_global(shards: str) -> None:
    made = seed()
    totals = sorted(t for _, t in made)
    assert Invoice.order_by("-total").limit(5).pluck("total") == totals[::-1][:5]
    assert Invoice.order_by("total").offset(4).limit(6).pluck("total") == totals[4:10]
    assert Invoice.order_by("total").offset(30).pluck("total") == totals[30:]
    records = Invoice.order_by("customer_id", "-total").limit(7).all()
    assert [(r.customer_id, r.total) for r in records] == sorted(made, key=lambda r: (r[0], -r[1]))[:7]
    # each shard was asked for offset + limit rows, never all of them
    seen = statements_on(*SHARDS)
    Invoice.order_by("total").offset(3).limit(2).pluck("total", "customer_id")
    for shard in SHARDS:
        (statement, params), = seen[shard]
        values = list(params.values() if isinstance(params, dict) else params)
        assert values[0] == 5 and set(values[1:]) <= {0}    # LIMIT 5 (SQLite adds OFFSET 0)
    assert Invoice.order_by("total").limit(2).pluck("customer_id") == [0, 0]
    assert Invoice.order_by("-total").first().total == totals[-1]  # type: ignore[union-attr]
    assert Invoice.order_by("-total").last().total == totals[0]  # type: ignore[union-attr]


def test_nulls_sort_first_ascending_on_every_backend(shards: str) -> None:
    made = seed(6, 2)
    for customer, total in made[::3]:
        Invoice.where(customer_id=customer).where(total=total).update(note=f"n{total:03d}")
    notes = sorted(f"n{t:03d}" for _, t in made[::3])
    nulls = len(made) - len(notes)
    assert Invoice.order_by("note").limit(nulls + 1).pluck("note") == [None] * nulls + notes[:1]
    assert Invoice.order_by("-note").limit(len(notes) + 1).pluck("note") == notes[::-1] + [None]
    assert Invoice.order_by("-note").offset(len(notes) - 1).limit(2).pluck("note") == [notes[0], None]


def test_aggregates_combine_across_shards(shards: str) -> None:
    made = seed()
    for i in range(9):                  # uneven shards: a mean of means would be wrong
        Invoice.create(customer_id=0, total=1000 + i, note="x")
    totals = [t for _, t in made] + [1000 + i for i in range(9)]
    assert Invoice.count() == len(totals)
    assert Invoice.count("note") == 9
    assert Invoice.sum("total") == sum(totals)
    assert Invoice.min("total") == min(totals) and Invoice.max("total") == max(totals)
    average = Invoice.avg("total")
    assert isinstance(average, float | Decimal)
    assert abs(float(average) - sum(totals) / len(totals)) < 1e-9
    assert Invoice.where(total=-1).avg("total") is None
    assert Invoice.where(total=-1).sum("total") is None
    assert Invoice.where(note="x").exists() and not Invoice.where(note="y").exists()
    with pytest.raises(QueryError, match="distinct"):
        Invoice.count("customer_id", distinct=True)
    assert Invoice.where(customer_id=0).count("customer_id", distinct=True) == 1


def test_batch_and_find_cover_every_shard(shards: str) -> None:
    made = seed()
    # ids repeat between shards (each counts its own): batches go shard by shard
    seen = [(r.customer_id, r.total) for batch in Invoice.batch(4) for r in batch]
    assert sorted(seen) == sorted(made)
    assert sum(len(b) for b in Invoice.limit(10).batch(4)) == 10
    one = Invoice.where(total=71).first()
    assert one is not None and one.customer_id == 7


def test_fan_out_runs_the_shards_at_once(shards: str) -> None:
    seed()
    threads: set[str] = set()

    def slow(conn: Any, *args: Any) -> None:
        threads.add(threading.current_thread().name)
        time.sleep(0.4)

    for shard in SHARDS:
        sa.event.listen(get_connection(shard).engine, "before_cursor_execute", slow)
    started = time.monotonic()
    assert Invoice.count() == 36
    took = time.monotonic() - started
    assert len(threads) == 3 and took < 1.0, (threads, took)   # one after another: 1.2 s


def test_fan_out_works_in_the_callers_context(shards: str) -> None:
    """The workers see the caller's open transaction and blocks; the request scope works."""
    seed()
    home = shard_of(Invoice, 2)
    with Transaction(home):
        Invoice.create(customer_id=2, total=5000)         # not committed yet
        assert Invoice.where(total=5000).count() == 1     # a worker read it on the tx's connection
        assert Invoice.order_by("-total").limit(1).pluck("total") == [5000]
    with request_scope():
        with Invoice.using_connection(home):
            assert Invoice.where(total=5000).count() == 1
        assert Invoice.count() == 37
        with Transaction(home):                            # shared by the request's copies
            Invoice.create(customer_id=2, total=6000)
            assert Invoice.order_by("-total").limit(1).pluck("total") == [6000]
        assert Invoice.count() == 38


def test_writes_across_shards_need_one_unit(shards: str) -> None:
    seed()
    a = shard_of(Invoice, 1)
    b_key = next(c for c in range(100) if shard_of(Invoice, c) != a)
    with pytest.raises(CrossConnectionError, match="across_shards=True"):
        with Transaction(a):
            Invoice.create(customer_id=1, total=900)
            Invoice.create(customer_id=b_key, total=901)
    assert not Invoice.where(total=[900, 901]).exists()      # neither was kept
    with pytest.raises(CrossConnectionError, match="touches shards"):
        Invoice.where(note=None).update(note="all")
    assert Invoice.where(note="all").count() == 0
    assert Invoice.where(customer_id=1).update(note="one") == 3     # one shard: fine


def test_across_shards_is_a_two_phase_unit(shards: str) -> None:
    if shards == "sqlite":
        pytest.skip("two-phase commit needs servers (at most one SQLite participant)")
    seed()
    with Invoice.transaction(across_shards=True):
        assert Invoice.where(note=None).update(note="all") == 36
        Invoice.create(customer_id=1000, total=1)
    assert Invoice.where(note="all").count() == 36 and Invoice.where(total=1).count() == 2
    with pytest.raises(RuntimeError), Invoice.transaction(across_shards=True):
        Invoice.where(note="all").update(note="gone")
        raise RuntimeError("roll back every shard")
    assert Invoice.where(note="gone").count() == 0 and Invoice.where(note="all").count() == 36


def test_bulk_writes_go_to_each_rows_shard(shards: str) -> None:
    home = shard_of(Invoice, 3)
    other = next(c for c in range(100) if shard_of(Invoice, c) != home)
    assert Invoice.bulk_insert([{"customer_id": 3, "total": t} for t in range(5)]) == 5
    assert Invoice.on_shard(home).count() == 5 == Invoice.count()
    with pytest.raises(CrossConnectionError, match="across_shards=True"):
        Invoice.bulk_insert([{"customer_id": 3, "total": 90}, {"customer_id": other, "total": 91}])
    assert Invoice.count() == 5                                    # nothing written anywhere
    with Invoice.using_connection(home), pytest.raises(QueryError, match="not on the pinned"):
        Invoice.bulk_insert([Invoice(customer_id=other, total=92)])
    first = Invoice.where(customer_id=3).order_by("total").first()
    assert first is not None
    Invoice.insert_or_update({"id": first.id, "customer_id": 3, "total": 500}, conflict_keys=["id"])
    Invoice.bulk_insert_or_update([{"id": first.id, "customer_id": 3, "total": 501}],
                                  conflict_keys=["id"])
    assert Invoice.where(customer_id=3).order_by("-total").pluck("total")[:1] == [501]
    assert Invoice.count() == 5
    if shards == "servers":                                        # one two-phase unit
        with Invoice.transaction(across_shards=True):
            Invoice.bulk_insert([{"customer_id": c, "total": 1000 + c} for c in range(12)])
        assert Invoice.where(total=[1000 + c for c in range(12)]).count() == 12


ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "mysql": "mysql+aiomysql"}


@pytest.mark.parametrize("flavour", ["sqlite", "servers"])
def test_async_fan_out_runs_the_shards_at_once(flavour: str, tmp_path: Any,
                                               request: pytest.FixtureRequest) -> None:
    """On async connections each shard is a task of the caller's loop, in its context."""
    import asyncio

    from sqlalchemy.util import await_only

    if flavour == "sqlite":
        pytest.importorskip("aiosqlite")
        urls = {s: f"sqlite+aiosqlite:///{tmp_path / s}.db" for s in SHARDS}
    else:
        pytest.importorskip("asyncpg")
        pytest.importorskip("aiomysql")
        servers = request.getfixturevalue("clusters")
        urls = {}
        for shard, url in zip(SHARDS, (servers[0], servers[2], servers[1]), strict=True):  # mixed
            parsed = sa.engine.make_url(url)
            urls[shard] = parsed.set(drivername=ASYNC_DRIVERS[parsed.get_backend_name()]) \
                .render_as_string(hide_password=False)
    ConnectionManager.reset()
    ConnectionManager.configure({s: {"url": url} for s, url in urls.items()})
    tasks: set[int] = set()

    def slow(*args: Any) -> None:     # a driver's wait: the loop runs the other shards meanwhile
        tasks.add(id(asyncio.current_task()))
        await_only(asyncio.sleep(0.4))

    async def main() -> None:
        await Invoice.adrop_table()
        await Invoice.acreate_table()
        for customer in range(12):
            await Invoice.acreate(customer_id=customer, total=customer * 10)
        assert await Invoice.acount() == 12 and await Invoice.asum("total") == 660
        assert await Invoice.order_by("-total").limit(2).apluck("total") == [110, 100]
        assert [r.total for r in await Invoice.where(customer_id=4).aall()] == [40]
        home = shard_of(Invoice, 2)
        async with Transaction(home):           # the tasks see the caller's open transaction
            await Invoice.acreate(customer_id=2, total=5000)
            assert await Invoice.where(total=5000).acount() == 1
        for shard in SHARDS:
            sa.event.listen(get_connection(shard).engine, "before_cursor_execute", slow)   # sync side
        started = time.monotonic()
        assert await Invoice.acount() == 13
        took = time.monotonic() - started
        assert len(tasks) == 3 and took < 1.0, (tasks, took)     # one after another: 1.2 s
        await ConnectionManager.areset()

    try:
        asyncio.run(main())
    finally:
        ConnectionManager.reset()


class Customer(IntegerPKMixin, ActiveRecord):
    __table_name__ = "shard_customers"
    __connection__ = "s0"
    name: str
    invoices: ClassVar[HasMany[ShardedInvoice]] = HasMany(foreign_key="customer_id",
                                                          inverse_of="customer")


class ShardedInvoice(IntegerPKMixin, ActiveRecord):
    __table_name__ = "shard_invoices"
    __shards__ = SHARDS
    __shard_key__ = "customer_id"
    customer_id: int
    total: int
    note: str | None = None
    customer: ClassVar[BelongsTo[Customer]] = BelongsTo(foreign_key="customer_id",
                                                        inverse_of="invoices")


def test_relations_to_and_from_a_sharded_model(shards: str) -> None:
    Customer.drop_table()
    Customer.create_table()
    customers = [Customer.create(name=f"c{i}") for i in range(6)]
    for customer in customers:
        for i in range(2):
            ShardedInvoice.create(customer_id=customer.id, total=customer.id * 10 + i)
    seen = statements_on(*SHARDS)
    assert [i.total for i in customers[2].invoices()] == [30, 31]     # the key's shard alone
    assert [s for s in SHARDS if seen[s]] == [shard_of(ShardedInvoice, customers[2].id)]
    loaded = Customer.order_by("id").with_("invoices").all()          # one IN query per shard
    assert [sorted(i.total for i in c.invoices()) for c in loaded] == [
        [c.id * 10, c.id * 10 + 1] for c in customers]
    top = ShardedInvoice.with_("customer").order_by("-total").limit(3).all()
    assert [(i.total, i.customer().name) for i in top] == [(61, "c5"), (60, "c5"), (51, "c4")]
    Customer.drop_table()


# -- failures -----------------------------------------------------------------------------------


def test_an_unreachable_shard_fails_the_query_naming_it(shards: str, tmp_path: Any) -> None:
    seed()
    broken = ({"url": f"sqlite:///{tmp_path}/no/such/dir/s1.db"} if shards == "sqlite" else
              {"url": "postgresql+psycopg2://postgres@127.0.0.1:1/postgres",
               "connect_args": {"connect_timeout": 2}})
    kept = Invoice.on_shard("s0").count() + Invoice.on_shard("s2").count()
    ConnectionManager.configure("s1", broken)
    with pytest.raises(ShardError, match="shard 's1' failed") as caught:
        Invoice.order_by("total").all()
    assert caught.value.shard == "s1" and set(caught.value.failures) == {"s1"}
    with pytest.raises(ShardError, match="'s1'"):
        Invoice.count()
    with partial_results() as report:
        assert Invoice.count() == kept
        assert len(Invoice.order_by("total").pluck("total")) == kept
    assert report.partial and set(report.failed) == {"s1"}
    with partial_results() as clean:
        assert Invoice.where(customer_id=shard_key_on("s0")).count() == 3
    assert not clean.partial


def shard_key_on(shard: str) -> int:
    return next(c for c in range(100) if shard_of(Invoice, c) == shard)


def test_a_shard_server_stopped_mid_query(clusters: tuple[str, str, str]) -> None:
    """A PostgreSQL shard shut down (by its pid) while the fan-out waits on it: ShardError."""
    from tests.servers import scratch_postgresql

    ConnectionManager.reset()
    with scratch_postgresql() as doomed:
        ConnectionManager.configure({"s0": {"url": clusters[0]}, "s1": {"url": doomed},
                                     "s2": {"url": clusters[1]}})
        try:
            Invoice.drop_table()
            Invoice.create_table()
            seed(6, 1)
            with get_connection("s1").engine.connect() as conn:
                data = conn.exec_driver_sql("SHOW data_directory").scalar()
            postmaster = int(Path(str(data), "postmaster.pid").read_text().split()[0])
            failure: list[BaseException] = []

            def query() -> None:
                try:
                    Invoice.where("pg_sleep(?) IS NOT NULL", 2.0).count()
                except BaseException as exc:   # handed to the test thread
                    failure.append(exc)

            runner = threading.Thread(target=query)
            runner.start()
            time.sleep(0.7)                         # the statements run on every shard now
            os.kill(postmaster, signal.SIGINT)      # fast shutdown: running queries are cut off
            runner.join(15)
            assert not runner.is_alive()
            assert failure and isinstance(failure[0], ShardError), failure
            assert failure[0].shard == "s1" and "shard 's1' failed" in str(failure[0])
            assert isinstance(failure[0].__cause__, sa.exc.DBAPIError)
        finally:
            ConnectionManager.reset()


class Wide(IntegerPKMixin, ActiveRecord):
    __table_name__ = "shard_wide"
    __shards__ = ["w0", "w1", "w2", "w3", "w4"]
    __shard_key__ = "account"
    account: str
    amount: Decimal = Field(max_digits=12, decimal_places=2)


def test_five_servers_of_two_kinds(clusters: tuple[str, str, str]) -> None:
    """Our three servers and both servers of the other tests, as one model's shards."""
    ConnectionManager.reset()
    ConnectionManager.configure({
        "w0": {"url": clusters[0]}, "w1": {"url": clusters[1]}, "w2": {"url": clusters[2]},
        "w3": {"url": SERVER_URLS["postgresql"][1]}, "w4": {"url": SERVER_URLS["mysql"][1]},
    })
    try:
        Wide.drop_table()
        Wide.create_table()
        rng = random.Random(21)
        made = [(f"acct-{i}", Decimal(rng.randrange(1, 10**6)) / 100) for i in range(300)]
        for account, amount in made:
            Wide.create(account=account, amount=amount)
        placed = Counter(shard_of(Wide, a) for a, _ in made)
        assert set(placed) == set(Wide.__shards__)           # every server holds rows
        assert {s: Wide.on_shard(s).count() for s in placed} == dict(placed)
        amounts = sorted(a for _, a in made)
        assert Wide.sum("amount") == sum(amounts)
        assert Wide.order_by("-amount").offset(5).limit(10).pluck("amount") == amounts[::-1][5:15]
        assert abs(Wide.avg("amount") - sum(amounts) / len(amounts)) < Decimal("0.0001")
        assert Wide.where(account="acct-7").pluck("amount") == [made[7][1]]
        with Wide.transaction(across_shards=True):
            assert Wide.where(account=[a for a, _ in made[:50]]).update(amount=0) == 50
        assert Wide.where(amount=0).count() == 50
        Wide.drop_table()
    finally:
        ConnectionManager.reset()


def test_a_mariadb_shard_killed_mid_query(clusters: tuple[str, str, str]) -> None:
    """A MariaDB shard killed (SIGKILL, by its pid) while the fan-out waits on it: ShardError."""
    from tests.servers import scratch_mariadb

    ConnectionManager.reset()
    with scratch_mariadb() as doomed:
        ConnectionManager.configure({"s0": {"url": clusters[2]}, "s1": {"url": doomed},
                                     "s2": {"url": SERVER_URLS["mysql"][1]}})
        try:
            Invoice.drop_table()
            Invoice.create_table()
            seed(6, 1)
            with get_connection("s1").engine.connect() as conn:
                pid_file = conn.exec_driver_sql("SELECT @@pid_file").scalar()
            pid = int(Path(str(pid_file)).read_text().split()[0])
            failure: list[BaseException] = []

            def query() -> None:
                try:
                    Invoice.where("SLEEP(?) = 0", 2).order_by("total").all()
                except BaseException as exc:   # handed to the test thread
                    failure.append(exc)

            runner = threading.Thread(target=query)
            runner.start()
            time.sleep(0.7)
            os.kill(pid, signal.SIGKILL)        # the server dies under the running query
            runner.join(15)
            assert not runner.is_alive()
            assert failure and isinstance(failure[0], ShardError), failure
            assert failure[0].shard == "s1" and set(failure[0].failures) == {"s1"}
            ConnectionManager.configure("s1", {"url": doomed})   # down: refused at once
            with partial_results() as report:
                assert Invoice.count() == 6 - sum(shard_of(Invoice, c) == "s1" for c in range(6))
            assert list(report.failed) == ["s1"]
            Invoice.on_shard("s0").all_rows().delete()
            Invoice.on_shard("s2").all_rows().delete()
        finally:
            ConnectionManager.reset()
