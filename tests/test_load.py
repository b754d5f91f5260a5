"""Under load, against the real PostgreSQL and MariaDB servers: nothing lost, no leak, no hang.

- a soak: 16 threads, and separately 50 asyncio tasks driving a thread pool,
  mixing creates, updates, deletes, eager loads, ``using_connection`` blocks
  and transactions on two connections (PostgreSQL and MariaDB); every worker
  keeps a ledger of what it committed, and afterwards every row, count and
  sum on both servers matches the ledgers, and no pooled connection leaked;
- pool exhaustion: more transactions than ``pool_size + max_overflow`` give
  ``PoolExhausted`` after ``pool_timeout``, naming the connection and the
  pool settings, while the holders finish their work;
- two-phase transfers in both directions over the same rows, plus two-phase
  updates of those rows, with short lock timeouts: every row ends up exactly
  once, with every committed update.

Each test prints its figures (``tests.stress.report``); the soaks run 8 s in
CI and ``RHOSOCIAL_AR_SOAK_SECONDS`` (default 180) under ``--soak``.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from rhosocial_ar import (
    ActiveRecord,
    ConnectionManager,
    Field,
    HasMany,
    IntegerPKMixin,
    PoolExhausted,
    decision_log,
    get_connection,
    transfer,
    two_phase,
)
from rhosocial_ar.dialects import in_doubt_xids, is_retryable
from tests.conftest import SERVER_URLS, require_backend
from tests.stress import Crew, durations, report

PG_URL = SERVER_URLS["postgresql"][0]
MY_URL = SERVER_URLS["mysql"][1]
APP_NAME = "rhosocial_ar_soak"       # PostgreSQL application_name of the soak's sessions


class Deliberate(Exception):
    """Raised inside a transaction on purpose, to roll it back."""


# -- the soak's models: owners on PostgreSQL, their items on MariaDB, tallies on both

class LoadOwner(IntegerPKMixin, ActiveRecord):
    __table_name__ = "load_owners"
    __connection__ = "default"
    id: int | None = None
    worker: int = Field(index=True)
    name: str = Field(max_length=40, unique=True)
    total: int = 0
    items: ClassVar[HasMany[LoadItem]] = HasMany(foreign_key="owner_id")


class LoadItem(IntegerPKMixin, ActiveRecord):
    __table_name__ = "load_items"
    __connection__ = "secondary"
    id: int | None = None
    worker: int = Field(index=True)
    owner_id: int = Field(index=True)
    qty: int
    tag: str = Field(max_length=10)


class LoadTally(IntegerPKMixin, ActiveRecord):
    """A table on both connections; which one a row goes to is a ``using_connection`` block's."""

    __table_name__ = "load_tallies"
    __connection__ = "default"
    id: int | None = None
    worker: int = Field(index=True)
    amount: int
    tag: str = Field(max_length=10)


@dataclass
class Ledger:
    """What one worker committed, as it saw it."""

    owners: dict[int, int] = field(default_factory=dict)                 # id -> total
    items: dict[int, tuple[int, int]] = field(default_factory=dict)      # id -> (owner, qty)
    tallies: dict[str, list[int]] = field(
        default_factory=lambda: {"default": [], "secondary": []})
    ops: collections.Counter[str] = field(default_factory=collections.Counter)
    rolled_back: int = 0          # transactions and savepoints rolled back on purpose
    checks: int = 0               # rows compared with the ledger during the run


class Worker:
    """One thread's or task's share of the soak: random operations on its own rows."""

    OPS = {
        "create_owner": 8, "add_item": 22, "update_item": 14, "delete_item": 8,
        "eager_check": 14, "tally_in_block": 12, "savepoint": 6, "integrity_error": 5,
        "two_phase_item": 6, "read_elsewhere": 5,
    }

    def __init__(self, number: int, seed: int) -> None:
        self.number = number
        self.rng = random.Random(seed)
        self.ledger = Ledger()
        self.owners: dict[int, LoadOwner] = {}
        self.made = 0
        self.latencies: list[float] = []

    def step(self) -> str:
        op = self.rng.choices(list(self.OPS), weights=list(self.OPS.values()))[0]
        if not self.owners:
            op = "create_owner"
        elif not self.ledger.items and op in ("update_item", "delete_item"):
            op = "add_item"
        started = time.perf_counter()
        getattr(self, op)()
        self.latencies.append(time.perf_counter() - started)
        self.ledger.ops[op] += 1
        return op

    # -- operations ---------------------------------------------------------

    def _owner(self) -> LoadOwner:
        return self.owners[self.rng.choice(list(self.owners))]

    def create_owner(self) -> None:
        self.made += 1
        owner = LoadOwner.create(worker=self.number, name=f"w{self.number}-{self.made}")
        assert owner.id is not None
        self.owners[owner.id] = owner
        self.ledger.owners[owner.id] = 0

    def add_item(self) -> None:
        """An item on MariaDB and its owner's total on PostgreSQL, in one transaction each."""
        owner, qty = self._owner(), self.rng.randint(1, 100)
        doomed = self.rng.random() < 0.15
        item = LoadItem(worker=self.number, owner_id=owner.id, qty=qty,
                        tag="doomed" if doomed else "ok")
        try:
            with LoadOwner.transaction(), LoadItem.transaction():
                item.save()
                owner.total += qty
                owner.save()
                if doomed:
                    raise Deliberate
        except Deliberate:
            assert item.is_new_record, "a rolled-back insert still claims its row"
            owner.refresh()
            assert owner.total == self.ledger.owners[owner.id]
            self.ledger.rolled_back += 1
            return
        assert item.id is not None
        self.ledger.items[item.id] = (owner.id, qty)
        self.ledger.owners[owner.id] += qty

    def update_item(self) -> None:
        item_id = self.rng.choice(list(self.ledger.items))
        owner_id, qty = self.ledger.items[item_id]
        new = self.rng.randint(1, 100)
        owner = self.owners[owner_id]
        with LoadOwner.transaction(), LoadItem.transaction():
            item = LoadItem.find(item_id)
            assert item.qty == qty
            item.qty = new
            item.save()
            owner.total += new - qty
            owner.save()
        self.ledger.items[item_id] = (owner_id, new)
        self.ledger.owners[owner_id] += new - qty

    def delete_item(self) -> None:
        item_id = self.rng.choice(list(self.ledger.items))
        owner_id, qty = self.ledger.items[item_id]
        owner = self.owners[owner_id]
        with LoadItem.transaction(), LoadOwner.transaction():     # the other order
            assert LoadItem.find(item_id).delete() == 1
            owner.total -= qty
            owner.save()
        del self.ledger.items[item_id]
        self.ledger.owners[owner_id] -= qty

    def eager_check(self) -> None:
        """Owners from PostgreSQL with their items from MariaDB equal the ledger, row for row."""
        owners = LoadOwner.where(worker=self.number).with_("items").all()
        seen = {o.id: (o.total, {i.id: i.qty for i in o.items()}) for o in owners}
        expected: dict[int, tuple[int, dict[int, int]]] = {
            o: (total, {}) for o, total in self.ledger.owners.items()}
        for item_id, (owner_id, qty) in self.ledger.items.items():
            expected[owner_id][1][item_id] = qty
        assert seen == expected
        self.ledger.checks += len(seen) + sum(len(items) for _, items in seen.values())

    def tally_in_block(self, name: str | None = None) -> None:
        """Every LoadTally operation in the block goes to the block's connection, in this context."""
        name = name or self.rng.choice(["default", "secondary"])
        amount = self.rng.randint(1, 50)
        with LoadTally.using_connection(name):
            self.tally_here(name, amount)

    def tally_here(self, name: str, amount: int | None = None) -> None:
        """Write and read LoadTally wherever this context routes it (expected: ``name``)."""
        amount = amount or self.rng.randint(1, 50)
        LoadTally.create(worker=self.number, amount=amount, tag="ok")
        self.ledger.tallies[name].append(amount)
        total = LoadTally.where(worker=self.number).sum("amount")
        assert total == sum(self.ledger.tallies[name]), f"tallies routed away from {name!r}"
        self.ledger.checks += 1

    def read_elsewhere(self) -> None:
        other = "secondary" if self.rng.random() < 0.5 else "default"
        count = LoadTally.using(other).where(worker=self.number).count()
        assert count == len(self.ledger.tallies[other])
        self.ledger.checks += 1

    def savepoint(self) -> None:
        """A nested block rolled back on purpose; the outer transaction commits."""
        amount = self.rng.randint(1, 50)
        with LoadTally.transaction():
            LoadTally.create(worker=self.number, amount=amount, tag="ok")
            try:
                with LoadTally.transaction():                   # SAVEPOINT
                    LoadTally.create(worker=self.number, amount=1000, tag="doomed")
                    raise Deliberate
            except Deliberate:
                self.ledger.rolled_back += 1
        self.ledger.tallies["default"].append(amount)

    def integrity_error(self) -> None:
        """A unique violation on PostgreSQL rolls back the work on both connections."""
        owner = self._owner()
        with pytest.raises(sa.exc.IntegrityError):
            with LoadItem.transaction(), LoadOwner.transaction():
                LoadItem.create(worker=self.number, owner_id=owner.id, qty=5, tag="doomed")
                with LoadTally.using_connection("secondary"):
                    LoadTally.create(worker=self.number, amount=1000, tag="doomed")
                LoadTally.create(worker=self.number, amount=1000, tag="doomed")
                LoadOwner.create(worker=self.number, name=owner.name)     # taken
        self.ledger.rolled_back += 1

    def two_phase_item(self) -> None:
        owner, qty = self._owner(), self.rng.randint(1, 100)
        doomed = self.rng.random() < 0.2
        item = LoadItem(worker=self.number, owner_id=owner.id, qty=qty,
                        tag="doomed" if doomed else "ok")
        try:
            with two_phase("default", "secondary"):
                item.save()
                owner.total += qty
                owner.save()
                if doomed:
                    raise Deliberate
        except Deliberate:
            assert item.is_new_record
            owner.refresh()
            self.ledger.rolled_back += 1
            return
        assert item.id is not None
        self.ledger.items[item.id] = (owner.id, qty)
        self.ledger.owners[owner.id] += qty


def _soak_connections() -> None:
    require_backend("postgresql")
    require_backend("mysql")
    ConnectionManager.reset()
    pool = {"pool_size": 8, "max_overflow": 24, "pool_timeout": 30}
    ConnectionManager.configure({
        "default": {"url": PG_URL, **pool, "connect_args": {"application_name": APP_NAME}},
        "secondary": {"url": MY_URL, **pool},
    })
    for model in (LoadOwner, LoadItem, LoadTally):
        model.drop_table()
        model.create_table()
    with LoadTally.using_connection("secondary"):
        LoadTally.drop_table()
        LoadTally.create_table()
    with two_phase("default", "secondary"):   # the decision log table exists before the rush
        pass


def _server_sessions() -> dict[str, int]:
    """Sessions the servers hold for the soak's two connections (from an admin connection)."""
    found = {}
    admin = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        found["default"] = conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = :app"),
            {"app": APP_NAME}).scalar_one()
    admin.dispose()
    my = sa.make_url(MY_URL)
    admin = sa.create_engine(my.set(database="information_schema"), poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        found["secondary"] = conn.execute(sa.text(
            "SELECT count(*) FROM information_schema.processlist WHERE db = :db"),
            {"db": my.database}).scalar_one()
    admin.dispose()
    return found


def _check_against_ledgers(ledgers: list[Ledger]) -> int:
    """Every row on both servers is what the ledgers say; returns the rows compared."""
    owners = {o.id: o.total for o in LoadOwner.all()}
    items = {i.id: (i.owner_id, i.qty) for i in LoadItem.all()}
    expected_owners: dict[int, int] = {}
    expected_items: dict[int, tuple[int, int]] = {}
    for ledger in ledgers:
        expected_owners.update(ledger.owners)
        expected_items.update(ledger.items)
    assert len(owners) == len(expected_owners) and owners == expected_owners
    assert len(items) == len(expected_items) and items == expected_items
    totals: collections.Counter[int] = collections.Counter()
    for owner_id, qty in items.values():
        totals[owner_id] += qty
    assert {o: totals[o] for o in owners} == owners      # the cross-database invariant
    assert LoadOwner.count() == len(expected_owners)
    assert LoadOwner.sum("total") == sum(expected_owners.values())
    assert LoadItem.count() == len(expected_items)
    assert LoadItem.sum("qty") == sum(q for _, q in expected_items.values())
    checked = len(owners) + len(items)
    for name in ("default", "secondary"):
        amounts = [a for ledger in ledgers for a in ledger.tallies[name]]
        with LoadTally.using_connection(name):
            assert LoadTally.count() == len(amounts)
            assert (LoadTally.sum("amount") or 0) == sum(amounts)
            assert LoadTally.where(tag="doomed").count() == 0
            checked += LoadTally.count()
    assert LoadItem.where(tag="doomed").count() == 0
    return checked


def _check_pools(sessions_before: dict[str, int]) -> dict[str, Any]:
    """No connection checked out, and the servers hold no session the pools do not."""
    sessions = _server_sessions()
    state = {}
    for name in ("default", "secondary"):
        connection = get_connection(name)
        # the main pool, and the side pool two-phase decisions are written through
        pools = [connection.engine.pool]
        if connection._side is not None:
            pools.append(connection._side.pool)
        for pool in pools:
            assert pool.checkedout() == 0, f"{name}: {pool.status()}"
            assert pool.checkedin() <= pool.size()
        idle = sum(pool.checkedin() for pool in pools)
        assert sessions[name] == idle, (name, sessions, [p.status() for p in pools])
        state[name] = f"{idle} idle/{sessions_before[name]} at start, 0 out"
    return state


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


@pytest.mark.parametrize("seconds", durations(8))
def test_soak_threads(seconds):
    _soak_connections()
    try:
        sessions_before = _server_sessions()
        seed = random.randrange(1 << 30)
        workers = [Worker(i, seed + i) for i in range(16)]
        deadline = time.monotonic() + seconds

        def run(i: int) -> int:
            while time.monotonic() < deadline:
                workers[i].step()
            workers[i].eager_check()                 # the final state, seen by the worker
            return sum(workers[i].ledger.ops.values())

        started = time.monotonic()
        crew = Crew(len(workers), run, "soak").start()
        crew.join(seconds + 120)
        elapsed = time.monotonic() - started
        crew.raise_first()
        ledgers = [w.ledger for w in workers]
        checked = _check_against_ledgers(ledgers)
        pools = _check_pools(sessions_before)
        ops: collections.Counter[str] = sum((ledger.ops for ledger in ledgers), collections.Counter())
        latencies = [x for w in workers for x in w.latencies]
        report(threads=len(workers), seconds=elapsed, operations=sum(ops.values()),
               ops_per_second=sum(ops.values()) / elapsed, by_operation=dict(ops.most_common()),
               rolled_back_on_purpose=sum(ledger.rolled_back for ledger in ledgers),
               rows_checked_during_run=sum(ledger.checks for ledger in ledgers),
               rows_checked_at_end=checked, p50_ms=1000 * _percentile(latencies, 0.5),
               p99_ms=1000 * _percentile(latencies, 0.99), pools=pools, seed=seed)
        assert min(sum(w.ledger.ops.values()) for w in workers) > 5
    finally:
        ConnectionManager.reset()


@pytest.mark.parametrize("seconds", durations(8))
def test_soak_asyncio_tasks_through_a_thread_pool(seconds):
    """50 tasks, each awaiting its operations in a 16-thread pool; routing blocks stay per task."""
    _soak_connections()
    try:
        sessions_before = _server_sessions()
        seed = random.randrange(1 << 30)
        workers = [Worker(i, seed + i) for i in range(50)]
        routed_in_task = collections.Counter()

        async def task(worker: Worker, executor: ThreadPoolExecutor, deadline: float) -> None:
            loop = asyncio.get_running_loop()
            while loop.time() < deadline:
                if worker.owners and worker.rng.random() < 0.1:
                    # a block in the task: the work runs in a pool thread, in a copy of
                    # this task's context, while the other tasks route as they like
                    name = worker.rng.choice(["default", "secondary"])
                    with LoadTally.using_connection(name):
                        context = contextvars.copy_context()
                        await loop.run_in_executor(executor, context.run, worker.tally_here, name)
                        await asyncio.sleep(0)
                        await loop.run_in_executor(executor, context.run, worker.tally_here, name)
                    routed_in_task[name] += 2
                else:
                    await loop.run_in_executor(executor, worker.step)
            await loop.run_in_executor(executor, worker.eager_check)

        async def main() -> float:
            loop = asyncio.get_running_loop()
            with ThreadPoolExecutor(max_workers=16, thread_name_prefix="soak") as executor:
                started = loop.time()
                results = await asyncio.wait_for(
                    asyncio.gather(*(task(w, executor, started + seconds) for w in workers),
                                   return_exceptions=True),
                    timeout=seconds + 120)
                failed = [r for r in results if isinstance(r, BaseException)]
                if failed:
                    raise AssertionError(f"{len(failed)} task(s) failed: {failed[0]!r}") from failed[0]
                return loop.time() - started

        elapsed = asyncio.run(main())
        ledgers = [w.ledger for w in workers]
        checked = _check_against_ledgers(ledgers)
        pools = _check_pools(sessions_before)
        ops: collections.Counter[str] = sum((ledger.ops for ledger in ledgers), collections.Counter())
        operations = sum(ops.values()) + sum(routed_in_task.values())
        latencies = [x for w in workers for x in w.latencies]
        report(tasks=len(workers), pool_threads=16, seconds=elapsed, operations=operations,
               ops_per_second=operations / elapsed, by_operation=dict(ops.most_common()),
               task_routed_tallies=dict(routed_in_task),
               rolled_back_on_purpose=sum(ledger.rolled_back for ledger in ledgers),
               rows_checked_during_run=sum(ledger.checks for ledger in ledgers),
               rows_checked_at_end=checked, p50_ms=1000 * _percentile(latencies, 0.5),
               p99_ms=1000 * _percentile(latencies, 0.99), pools=pools, seed=seed)
        assert min(sum(w.ledger.ops.values()) for w in workers) > 2
        assert sum(routed_in_task.values()) > 0
    finally:
        ConnectionManager.reset()


# -- pool exhaustion ------------------------------------------------------------------

class Slot(IntegerPKMixin, ActiveRecord):
    __table_name__ = "load_slots"
    id: int | None = None
    who: str = Field(max_length=20)


@pytest.mark.parametrize("backend_name", ["postgresql", "mysql"])
def test_pool_exhaustion_is_a_clear_error_and_the_holders_finish(backend_name):
    require_backend(backend_name)
    ConnectionManager.reset()
    ConnectionManager.configure("default", {"url": SERVER_URLS[backend_name][0], "pool_size": 2,
                                            "max_overflow": 1, "pool_timeout": 1})
    try:
        Slot.drop_table()
        Slot.create_table()
        pool = get_connection().engine.pool
        holders = pool.size() + 1              # pool_size + max_overflow
        holding = threading.Barrier(holders + 1)
        release = threading.Event()

        def hold(i: int) -> int:
            with Slot.transaction():
                Slot.create(who=f"holder-{i}")
                holding.wait(10)
                assert release.wait(30)
                Slot.create(who=f"holder-{i}")          # the holders' work goes on
            return 2

        holder_crew = Crew(holders, hold, "holder").start()
        holding.wait(10)
        assert pool.checkedout() == holders

        def extra(i: int) -> tuple[float, BaseException | None]:
            started = time.monotonic()
            try:
                if i % 2:
                    Slot.count()                             # a read waits for the pool too
                else:
                    with Slot.transaction():
                        Slot.create(who=f"extra-{i}")
            except PoolExhausted as exc:
                return time.monotonic() - started, exc
            return time.monotonic() - started, None

        extras = Crew(6, extra, "extra").start()
        extras.join(10)
        extras.raise_first()
        waits = [wait for wait, _ in extras.results.values()]
        errors = [exc for _, exc in extras.results.values()]
        assert all(isinstance(e, PoolExhausted) for e in errors), errors
        assert all(0.9 <= w < 3 for w in waits), waits
        message = str(errors[0])
        for part in ("connection 'default'", "pool_size=2", "max_overflow=1", "pool_timeout=1",
                     "3 checked out"):
            assert part in message, message
        assert isinstance(errors[0].__cause__, sa.exc.TimeoutError)

        # a waiter served as soon as a holder commits, well within pool_timeout
        served = threading.Event()

        def late(_: int) -> float:
            started = time.monotonic()
            with Slot.transaction():
                served.set()
                Slot.create(who="late")
            return time.monotonic() - started

        waiter = Crew(1, late, "late").start()
        release.set()
        holder_crew.join(10)
        waiter.join(10)
        holder_crew.raise_first()
        waiter.raise_first()
        assert served.is_set()
        assert Slot.where(who="late").count() == 1
        assert Slot.where("who LIKE ?", "holder-%").count() == 2 * holders
        assert Slot.where("who LIKE ?", "extra-%").count() == 0
        assert pool.checkedout() == 0
        report(backend=backend_name, pool="pool_size=2 max_overflow=1 pool_timeout=1",
               holders=holders, extra_threads=len(waits), pool_exhausted=len(errors),
               wait_min_s=min(waits), wait_max_s=max(waits), late_waiter_s=waiter.results[0],
               rows_checked=Slot.count())
    finally:
        ConnectionManager.reset()


# -- two-phase transfers over the same rows, both ways -----------------------------------

ROWS = 240


class LeftBox(ActiveRecord):
    __table_name__ = "contended_boxes"
    __connection__ = "left"
    id: int = Field(primary_key=True, autoincrement=False)
    payload: str = Field(max_length=40)
    hits: int = 0


class RightBox(ActiveRecord):
    __table_name__ = "contended_boxes"
    __connection__ = "right"
    id: int = Field(primary_key=True, autoincrement=False)
    payload: str = Field(max_length=40)
    hits: int = 0


def _payload(i: int) -> str:
    return f"box-{i}-{i * 7919 % 1000:03d}"


class _Retries(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("transfer(): batch after") and "retrying" in message:
            self.seen[message.rsplit(" hit ", 1)[-1].split(",")[0]] += 1
        elif record.levelno >= logging.WARNING:
            self.seen[f"warning: {message[:50]}"] += 1


@pytest.mark.parametrize("seconds", durations(6, 60))
def test_two_phase_transfers_both_ways_over_the_same_rows(seconds):
    """Rows moved PostgreSQL -> MariaDB and back at once, and updated meanwhile: none lost or doubled."""
    require_backend("postgresql")
    require_backend("mysql")
    ConnectionManager.reset()
    ConnectionManager.configure({
        "left": {"url": PG_URL, "connect_args": {"options": "-c lock_timeout=500"}},
        "right": {"url": MY_URL, "connect_args": {
            "init_command": "SET SESSION innodb_lock_wait_timeout = 1"}},
    })
    retries = _Retries()
    logger = logging.getLogger("rhosocial_ar")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(retries)
    try:
        for model in (LeftBox, RightBox):
            model.drop_table()
            model.create_table()
        half = ROWS // 2
        LeftBox.bulk_insert([{"id": i, "payload": _payload(i)} for i in range(1, half + 1)])
        RightBox.bulk_insert([{"id": i, "payload": _payload(i)} for i in range(half + 1, ROWS + 1)])
        stop = threading.Event()
        surfaced: list[BaseException] = []
        moved = collections.Counter()
        hits_committed = collections.Counter()
        lock_errors = collections.Counter()

        def mover(i: int) -> None:
            source, target = (LeftBox, RightBox) if i == 0 else (RightBox, LeftBox)
            while not stop.is_set():
                try:
                    result = transfer(source.query(), target, batch_size=20, delete_source=True,
                                      progress=False, retries=3)
                except sa.exc.DBAPIError as exc:      # retries used up: a clear error
                    assert is_retryable(exc), exc
                    assert any("rolled back on both sides" in n for n in exc.__notes__), exc
                    surfaced.append(exc)
                    continue
                moved[f"{source.__name__}->{target.__name__}"] += result.rows
                moved["batches"] += result.batches

        def toucher(i: int) -> None:
            """Two-phase updates of rows on both sides, in random order: +1 hit per row found.

            It holds its row locks a while, so the movers wait on it, time out and retry.
            """
            rng = random.Random(i)
            while not stop.is_set():
                ids = rng.sample(range(1, ROWS + 1), 4)
                order = [LeftBox, RightBox] if rng.random() < 0.5 else [RightBox, LeftBox]
                try:
                    with two_phase("left", "right"):
                        found = 0
                        for model in order:
                            for record in model.where(id=ids).for_update().all():
                                record.hits += 1
                                record.save()
                                found += 1
                            time.sleep(rng.uniform(0, 0.3))    # the application's work, locks held
                except sa.exc.DBAPIError as exc:
                    if not is_retryable(exc):
                        raise
                    lock_errors[str(getattr(exc.orig, "pgcode", None) or exc.orig.args[0])] += 1
                    continue
                hits_committed["rows"] += found
                hits_committed["transactions"] += 1

        started = time.monotonic()
        crew = Crew(5, lambda i: mover(i) if i < 2 else toucher(i), "contend").start()
        stop.wait(seconds)
        stop.set()
        crew.join(120)
        elapsed = time.monotonic() - started
        crew.raise_first()

        left = dict(LeftBox.query().pluck("id", "hits"))
        right = dict(RightBox.query().pluck("id", "hits"))
        assert not set(left) & set(right), f"rows on both sides: {sorted(set(left) & set(right))}"
        assert sorted([*left, *right]) == list(range(1, ROWS + 1)), "rows lost"
        payloads = dict(LeftBox.query().pluck("id", "payload")) | dict(
            RightBox.query().pluck("id", "payload"))
        assert payloads == {i: _payload(i) for i in range(1, ROWS + 1)}
        assert sum(left.values()) + sum(right.values()) == hits_committed["rows"], "updates lost"
        for name in ("left", "right"):
            with get_connection(name).engine.connect() as conn:
                assert in_doubt_xids(conn, "rar_") == []
            assert get_connection(name).engine.pool.checkedout() == 0
        assert moved["batches"] > 0 and hits_committed["transactions"] > 0
        report(threads=5, seconds=elapsed, rows=ROWS, rows_moved=dict(moved),
               batch_retries=dict(retries.seen), errors_surfaced=len(surfaced),
               touch_transactions=hits_committed["transactions"],
               hits_committed=hits_committed["rows"], toucher_lock_errors=dict(lock_errors),
               rows_checked=len(left) + len(right),
               lock_timeouts="PostgreSQL lock_timeout=500ms, MariaDB innodb_lock_wait_timeout=1s")
    finally:
        logger.removeHandler(retries)
        logger.setLevel(old_level)
        ConnectionManager.reset()


def test_first_two_phase_transactions_at_once_on_a_fresh_database():
    """Threads start their first two-phase transaction together: the log table is made once.

    (Fewer threads than the pool holds: see the next test for more.)
    """
    require_backend("postgresql")
    require_backend("mysql")
    ConnectionManager.reset()
    ConnectionManager.configure({"left": {"url": PG_URL}, "right": {"url": MY_URL}})
    try:
        for model in (LeftBox, RightBox):
            model.drop_table()
            model.create_table()
        for name in ("left", "right"):
            decision_log.log_table.drop(get_connection(name).engine, checkfirst=True)
        threads = 10
        start = threading.Barrier(threads)

        def first(i: int) -> None:
            start.wait(10)
            with two_phase("left", "right"):
                LeftBox.create(id=i, payload=_payload(i))
                RightBox.create(id=i, payload=_payload(i))

        started = time.monotonic()
        crew = Crew(threads, first, "first").start()
        crew.join(60)
        crew.raise_first()
        assert LeftBox.count() == RightBox.count() == threads
        assert decision_log.has_table(get_connection("left"))
        report(threads=threads, two_phase_commits=threads, seconds=time.monotonic() - started,
               rows_checked=2 * threads)
    finally:
        ConnectionManager.reset()


def test_as_many_two_phase_transactions_at_once_as_the_pool_holds():
    require_backend("postgresql")
    require_backend("mysql")
    ConnectionManager.reset()
    ConnectionManager.configure({
        "left": {"url": PG_URL, "pool_size": 2, "max_overflow": 0, "pool_timeout": 2},
        "right": {"url": MY_URL},
    })
    try:
        for model in (LeftBox, RightBox):
            model.drop_table()
            model.create_table()
        with two_phase("left", "right"):       # the decision log exists
            pass
        threads = 2                              # = pool_size + max_overflow of 'left'
        inside = threading.Barrier(threads)

        def both(i: int) -> float:
            started = time.monotonic()
            with two_phase("left", "right"):
                LeftBox.create(id=i, payload=_payload(i))
                RightBox.create(id=i, payload=_payload(i))
                inside.wait(10)                  # both hold their branch connection
            return time.monotonic() - started

        started = time.monotonic()
        crew = Crew(threads, both, "full").start()
        crew.join(30)
        report(threads=threads, pool="pool_size=2 max_overflow=0 pool_timeout=2",
               seconds=time.monotonic() - started, committed=len(crew.results),
               failed=dict(collections.Counter(type(e).__name__ for _, e in crew.errors)),
               error=str(crew.errors[0][1])[:70] if crew.errors else None)
        crew.raise_first()
        assert LeftBox.count() == RightBox.count() == threads
    finally:
        ConnectionManager.reset()
