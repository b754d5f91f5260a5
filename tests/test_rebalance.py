"""Resharding (rebalance.py, moves.py, cli_shards.py) on SQLite files and on the real servers.

The servers' flavour shards over four databases of two kinds on the servers the other
tests use (PostgreSQL and MariaDB, two databases each): every batch between them is a
two-phase commit. A kill is a SIGKILL of a child process (``python -m tests.test_rebalance``)
held at a step of its N-th batch; the rerun is the command line, in this process.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rhosocial_ar import (
    ActiveRecord,
    ConfigurationError,
    ConnectionManager,
    ConnectionNotFound,
    Field,
    IntegerPKMixin,
    get_connection,
    rebalance,
    recover,
    shard_of,
    shard_ranges,
    twophase,
)
from rhosocial_ar import moves as moves_module
from rhosocial_ar.cli import main
from rhosocial_ar.sharding import shard_index
from tests.conftest import SERVER_URLS, require_backend

rebalance_module = importlib.import_module("rhosocial_ar.rebalance")
transfer_module = importlib.import_module("rhosocial_ar.transfer")

ROOT = Path(__file__).resolve().parent.parent
OLD, NEW = ["s0", "s1", "s2"], ["s0", "s1", "s2", "s3"]
CUSTOMERS, PER = 150, 4                  # 600 rows, ids unique across shards
URLS_VARIABLE = "RHOSOCIAL_AR_REBALANCE_TEST_URLS"


class Order(ActiveRecord):
    __table_name__ = "rebalance_orders"
    __shards__ = OLD
    __shard_key__ = "customer_id"
    id: int = Field(primary_key=True, autoincrement=False)   # unique across shards: rows keep it
    customer_id: int
    total: int
    note: str | None = None


class Counted(IntegerPKMixin, ActiveRecord):
    """Ids numbered by each shard on its own: they repeat between shards."""

    __table_name__ = "rebalance_counted"
    __shards__ = OLD
    __shard_key__ = "customer_id"
    customer_id: int


class Plain(IntegerPKMixin, ActiveRecord):
    __table_name__ = "rebalance_plain"
    __connection__ = "s0"
    name: str


def configure_shards() -> None:
    """The app of the command line and of the child: the shards' URLs from the environment."""
    urls = json.loads(os.environ[URLS_VARIABLE])
    ConnectionManager.configure({name: {"url": url} for name, url in urls.items()})


def flavour_urls(flavour: str, tmp_path: Path) -> dict[str, str]:
    if flavour == "sqlite":
        return {s: f"sqlite:///{tmp_path / s}.db" for s in NEW}
    require_backend("postgresql")
    require_backend("mysql")
    pg, my = SERVER_URLS["postgresql"], SERVER_URLS["mysql"]
    return {"s0": pg[0], "s1": my[0], "s2": pg[1], "s3": my[1]}     # mixed backends


def _declared(model: Any) -> tuple[Any, ...]:
    return model.__ar_shard_spec__, model.__dict__.get("__shards__")


def _restore(model: Any, saved: tuple[Any, ...]) -> None:
    """Undo what a rebalance in this process did to the model's map."""
    moves_module.end(model)
    model.__ar_shard_spec__, shards = saved
    model.__shards__ = shards
    if "__shard_by__" in model.__dict__:
        del model.__shard_by__


@pytest.fixture(params=["sqlite", "servers"])
def shards(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """s0..s3 configured (the app's way), Order's table fresh on all four; the flavour."""
    monkeypatch.setenv(URLS_VARIABLE, json.dumps(flavour_urls(request.param, tmp_path)))
    ConnectionManager.reset()
    configure_shards()
    saved = _declared(Order)
    everywhere(Order, "drop_table")
    everywhere(Order, "create_table")
    try:
        yield request.param
    finally:
        _restore(Order, saved)
        everywhere(Order, "drop_table")
        ConnectionManager.reset()


def everywhere(model: Any, method: str) -> None:
    for shard in NEW:
        with model.using_connection(shard):
            getattr(model, method)()


def seed() -> list[tuple[int, int]]:
    """(id, customer_id) of every row, written shard by shard by the old map."""
    rows = [{"id": c * 10 + i, "customer_id": c, "total": c * 10 + i}
            for c in range(CUSTOMERS) for i in range(PER)]
    groups: dict[str, list[dict[str, int]]] = {}
    for row in rows:
        groups.setdefault(shard_of(Order, row["customer_id"]), []).append(row)
    for shard, group in groups.items():
        with Order.using_connection(shard):
            Order.bulk_insert(group)
    return [(r["id"], r["customer_id"]) for r in rows]


def placement(shards: list[str] = NEW) -> dict[str, list[tuple[int, int]]]:
    """(id, customer_id) on each shard, read with plain SQL."""
    found = {}
    for shard in shards:
        with get_connection(shard).engine.connect() as conn:
            found[shard] = sorted(tuple(r) for r in conn.execute(  # type: ignore[misc]
                sa.select(Order.c.id, Order.c.customer_id)))
    return found


def assert_each_row_once_at_home(made: list[tuple[int, int]]) -> None:
    found = placement()
    ids = Counter(i for rows in found.values() for i, _ in rows)
    assert sorted(ids) == sorted(i for i, _ in made) and set(ids.values()) == {1}
    for shard, rows in found.items():
        assert {NEW[shard_index(c, 4)] for _, c in rows} <= {shard}


# -- the move --------------------------------------------------------------------------------


def test_adding_a_shard_moves_only_what_jump_hash_reassigns(shards: str) -> None:
    made = seed()
    before = {s: len(r) for s, r in placement().items()}
    report = rebalance(Order, NEW, batch_size=40, progress=False)

    movers = Counter((OLD[shard_index(c, 3)], NEW[shard_index(c, 4)]) for _, c in made
                     if shard_index(c, 3) != shard_index(c, 4))
    assert {target for _, target in movers} == {"s3"}             # none between the old shards
    assert report.moved == dict(movers)
    assert 0.15 < report.rows_moved / len(made) < 0.35              # about 1/4
    assert report.batches == sum(-(-n // 40) for n in movers.values())
    assert report.before == before
    homes = Counter(NEW[shard_index(c, 4)] for _, c in made)
    assert report.after == report.expected == dict(homes)
    assert sum(report.before.values()) == sum(report.after.values()) == len(made)
    assert report.matches and "counts match" in str(report)
    assert_each_row_once_at_home(made)
    # the process reads and writes by the new map now
    assert Order.__shards__ == NEW and Order.count() == len(made)
    moved_key = next(c for _, c in made if shard_index(c, 3) != shard_index(c, 4))
    assert sorted(Order.where(customer_id=moved_key).pluck("id")) == [moved_key * 10 + i
                                                                      for i in range(PER)]
    Order.create(id=10**6, customer_id=moved_key, total=0)
    assert Order.on_shard("s3").where(id=10**6).exists()


def test_reads_during_the_move_see_each_row_once(shards: str) -> None:
    """Another thread reads (fan-out and by key) while batches move: never a row twice or none.

    One row is written mid-move (by the new map); a read may come before or after it,
    so it must match the rows either without it or with it.
    """
    made = seed()
    moving = sorted({c for _, c in made if shard_index(c, 3) != shard_index(c, 4)})
    watched = moving[: len(moving) // 2]
    top = sorted((i for i, _ in made), reverse=True)[:5]
    total = sum(i for i, _ in made)
    late = 10**6                            # the row written mid-move: id, and -total
    writing, written = threading.Event(), threading.Event()

    def expected(extra: bool) -> dict[str, Any]:
        return {"count": len(made) + extra, "sum": total - late * extra, "top": top,
                "keys": len(watched) * PER + extra,
                "key": sorted([watched[0] * 10 + i for i in range(PER)] + [late] * extra)}

    wrong: list[str] = []
    during: Counter[bool] = Counter()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            was_written, in_move = written.is_set(), moves_module.of(Order) is not None
            try:
                seen = {"count": Order.count(), "sum": Order.sum("total"),
                        "top": Order.order_by("-total").limit(5).pluck("id"),
                        "keys": Order.where(customer_id=watched).count(),
                        "key": sorted(Order.where(customer_id=watched[0]).pluck("id"))}
            except Exception as exc:       # handed to the test thread
                wrong.append(repr(exc))
                return
            begun = writing.is_set()     # with the row if written before, without if begun after
            allowed = expected(was_written), expected(begun)
            wrong.extend(f"{name}: {value} (written: {was_written}, begun: {begun})"
                         for name, value in seen.items() if value not in [a[name] for a in allowed])
            during[in_move] += 1

    def pace(batches: int) -> None:
        if batches == 1:                   # a write mid-move goes by the new map
            writing.set()
            Order.create(id=late, customer_id=watched[0], total=-late)
            written.set()
        time.sleep(0.02)

    thread = threading.Thread(target=reader)
    rebalance_module.after_batch = pace
    thread.start()
    try:
        while not during:                  # the reader is going
            time.sleep(0.01)
        report = rebalance(Order, NEW, batch_size=5, progress=False)
    finally:
        stop.set()
        thread.join(30)
        rebalance_module.after_batch = lambda batches: None
    assert not wrong, wrong[:3]
    assert during[True] >= 5, during       # reads ran while rows moved
    assert shard_of(Order, watched[0]) == "s3" and Order.on_shard("s3").where(id=late).exists()
    assert report.after["s3"] == report.expected["s3"] + 1 and not report.matches
    assert "COUNTS DIFFER" in str(report)
    assert_each_row_once_at_home([*made, (late, watched[0])])


def test_ranges_move_rows_both_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A new ranges map over the same shards: rows move between old shards, in both directions."""
    monkeypatch.setenv(URLS_VARIABLE, json.dumps(flavour_urls("sqlite", tmp_path)))
    ConnectionManager.reset()
    configure_shards()

    class Ranged(ActiveRecord):
        __table_name__ = "rebalance_ranged"
        __shards__ = OLD
        __shard_key__ = "customer_id"
        __shard_by__ = shard_ranges(100, 200)
        id: int = Field(primary_key=True, autoincrement=False)
        customer_id: int

    try:
        Ranged.create_table()
        for c in range(0, 300, 5):
            Ranged.create(id=c, customer_id=c)
        report = rebalance(Ranged, OLD, shard_ranges(50, 250), batch_size=7, progress=False)
        assert report.moved == {("s0", "s1"): 10, ("s2", "s1"): 10}
        assert report.after == report.expected == {"s0": 10, "s1": 40, "s2": 10} and report.matches
        assert Ranged.where(customer_id=[60, 260]).pluck("id") in ([60, 260], [260, 60])
        assert sorted(Ranged.on_shard("s1").pluck("customer_id")) == list(range(50, 250, 5))
        with pytest.raises(ConfigurationError, match="needs 2 boundaries"):
            rebalance(Ranged, OLD, shard_ranges(50), progress=False)
        # and back, from the command line
        command = ["shards", "rebalance", "tests.test_rebalance.Ranged", "--to", *OLD, "--ranges",
                   "100", "200", "--no-progress", "--app", "tests.test_rebalance:configure_shards"]
        capsys.readouterr()
        assert main(command) == 0
        out = capsys.readouterr().out
        assert "moved 20 rows in 2 batches (s1->s0 10, s1->s2 10)" in out and "counts match" in out
        assert [Ranged.on_shard(s).count() for s in OLD] == [20, 20, 20]
        assert main([*command, "--by", "hash"]) == 1
        assert "give --ranges or --by, not both" in capsys.readouterr().err
    finally:
        ConnectionManager.reset()


class Line(ActiveRecord):
    """A composite primary key, the shard key in it."""

    __table_name__ = "rebalance_lines"
    __shards__ = OLD
    __shard_key__ = "customer_id"
    customer_id: int = Field(primary_key=True, autoincrement=False)
    n: int = Field(primary_key=True, autoincrement=False)
    qty: int


@pytest.mark.parametrize("flavour", ["sqlite", "servers"])
def test_a_composite_primary_key(flavour: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(URLS_VARIABLE, json.dumps(flavour_urls(flavour, tmp_path)))
    ConnectionManager.reset()
    configure_shards()
    saved = _declared(Line)
    try:
        everywhere(Line, "drop_table")
        everywhere(Line, "create_table")
        for c in range(30):
            with Line.using_connection(shard_of(Line, c)):
                Line.bulk_insert([{"customer_id": c, "n": n, "qty": n} for n in range(3)])
        report = rebalance(Line, NEW, batch_size=7, progress=False)
        assert report.matches and report.rows_moved == 3 * sum(
            shard_index(c, 3) != shard_index(c, 4) for c in range(30))
        assert Line.count() == 90 and Line.on_shard("s3").count() == report.after["s3"]
        assert {shard_of(Line, c) for c in Line.on_shard("s3").pluck("customer_id")} == {"s3"}
        everywhere(Line, "drop_table")
    finally:
        _restore(Line, saved)
        ConnectionManager.reset()


# -- bad input: refused before anything is written ------------------------------------------


def test_bad_input_is_refused_before_anything_is_written(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(URLS_VARIABLE, json.dumps(flavour_urls("sqlite", tmp_path)))
    ConnectionManager.reset()
    configure_shards()
    saved = _declared(Order), _declared(Counted)
    try:
        Order.create_table()
        made = seed()
        placed = placement(OLD)
        with pytest.raises(ConfigurationError, match="is the one it has"):
            rebalance(Order, OLD)
        with pytest.raises(ConnectionNotFound, match="'s9'"):
            rebalance(Order, [*OLD, "s9"])
        with pytest.raises(ConfigurationError, match="distinct connection names"):
            rebalance(Order, ["s0", "s0"])
        with pytest.raises(ConfigurationError, match="not a sharded model"):
            rebalance(Plain, NEW)
        with pytest.raises(ConfigurationError, match="does not exist on shard 's3'"):
            rebalance(Order, NEW)          # s3 has no table yet
        with pytest.raises(ConfigurationError, match="batch_size"):
            rebalance(Order, NEW, batch_size=0)
        # ids numbered per shard repeat between shards: they would meet on s3
        everywhere(Counted, "create_table")
        for c in range(200):
            with Counted.using_connection(shard_of(Counted, c)):
                Counted.create(customer_id=c)
        counted = {s: Counted.on_shard(s).count() for s in OLD}
        with pytest.raises(ConfigurationError, match="unique across shards"):
            rebalance(Counted, NEW, progress=False)
        assert {s: Counted.on_shard(s).count() for s in OLD} == counted
        assert Counted.query().using("s3").count() == 0      # s3 is not one of its shards
        # nothing moved, and the models kept their maps
        assert placement(OLD) == placed and len(made) == Order.count()
        assert Order.__shards__ == OLD and Counted.__shards__ == OLD
        assert moves_module.of(Order) is None and moves_module.of(Counted) is None
        assert main(["shards", "rebalance", "tests.test_rebalance.Order", "--to", *OLD, "--app",
                     "tests.test_rebalance:configure_shards"]) == 1
    finally:
        _restore(Order, saved[0])
        _restore(Counted, saved[1])
        ConnectionManager.reset()


# -- a kill, then the command again --------------------------------------------------------

KILLS = {
    "sqlite": [("rebalance_batch", 2), ("between_sides", 3)],
    "servers": [("after_prepares", 2), ("after_decision", 3)],
}


@pytest.mark.parametrize("step_nth", [0, 1])
def test_a_killed_rebalance_finishes_when_run_again(shards: str, step_nth: int,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    step, nth = KILLS[shards][step_nth]
    made = seed()
    child = subprocess.Popen([sys.executable, "-m", "tests.test_rebalance", step, str(nth)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, child.kill)     # a child that never holds fails the test
    watchdog.start()
    try:
        assert child.stdout is not None
        line = child.stdout.readline()           # the child holds at the step until killed
        assert line.startswith(f"holding at {step}"), (line, child.stderr.read()
                                                       if child.stderr else "")
        child.send_signal(signal.SIGKILL)
    finally:
        watchdog.cancel()
        child.kill()
        child.wait(30)
    try:
        check_the_rerun(made, step, capsys)
    finally:
        recover()        # no prepared branch left to block the table's drop, whatever failed


def check_the_rerun(made: list[tuple[int, int]], step: str,
                    capsys: pytest.CaptureFixture[str]) -> None:
    found = placement()
    ids = Counter(i for rows in found.values() for i, _ in rows)
    assert set(ids) == {i for i, _ in made}                      # nothing lost
    assert 0 < len(found["s3"]) < len(made) // 3                 # the kill was mid-move

    capsys.readouterr()
    code = main(["shards", "rebalance", "tests.test_rebalance.Order", "--to", *NEW, "--no-progress",
                 "--batch-size", "20", "--app", "tests.test_rebalance:configure_shards"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "counts match" in out and "__shards__ = ['s0', 's1', 's2', 's3']" in out
    if step == "between_sides":        # the killed batch's rows were on both shards
        assert "20 rows were on two shards" in out
    if step.startswith("after_"):      # its two-phase branches, finished by the rerun
        assert "in-doubt branches of an earlier run" in out
    assert_each_row_once_at_home(made)
    homes = Counter(NEW[shard_index(c, 4)] for _, c in made)
    assert {s: len(r) for s, r in placement().items()} == dict(homes)
    assert main(["shards", "counts", "tests.test_rebalance.Order", "--app",
                 "tests.test_rebalance:configure_shards"]) == 0
    # the command ran in this process: Order has the new map here now
    assert capsys.readouterr().out.splitlines()[-1].split() == ["total", str(len(made))]


@pytest.mark.soak
def test_killed_at_random_moments(shards: str) -> None:
    """SIGKILL at a random moment, again and again, then a last run: every row once, at home."""
    made = seed()
    rng = random.Random(21)
    try:
        kill_at_random(made, rng)
    finally:
        recover()          # nothing prepared left to block the table's drop, whatever failed


def kill_at_random(made: list[tuple[int, int]], rng: random.Random) -> None:
    for _ in range(int(os.environ.get("RHOSOCIAL_AR_REBALANCE_KILLS", "8"))):
        child = subprocess.Popen([sys.executable, "-m", "tests.test_rebalance", "paced", "0"],
                                 cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline() == "started\n"
            time.sleep(rng.uniform(0.0, 0.6))
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(30)
        recover()          # a batch killed between its commits is in doubt until then
        ids = Counter(i for rows in placement().values() for i, _ in rows)
        assert set(ids) == {i for i, _ in made}                 # nothing lost between kills
    report = rebalance(Order, NEW, batch_size=20, progress=False)
    assert report.matches, str(report)
    assert_each_row_once_at_home(made)


def _child(step: str, nth: int) -> None:
    """Rebalance Order to NEW, holding (until killed) the nth time ``step`` is reached;
    step 'paced': never held, batches of 5 rows with a pause after each (to be killed at random)."""
    configure_shards()
    reached = Counter[str]()

    def hold(at: str) -> None:
        if at == step:
            reached[at] += 1
            if reached[at] == nth:
                print(f"holding at {step} #{nth}", flush=True)
                time.sleep(300)

    transfer_module.crash_point = hold
    twophase.crash_point = hold      # type: ignore[attr-defined]
    if step == "paced":
        rebalance_module.after_batch = lambda batches: time.sleep(0.005)
        print("started", flush=True)
        rebalance(Order, NEW, batch_size=5, progress=False)
    else:
        rebalance_module.after_batch = lambda batches: hold("rebalance_batch")
        rebalance(Order, NEW, batch_size=20, progress=False)
    print("finished without being held", flush=True)


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]))
