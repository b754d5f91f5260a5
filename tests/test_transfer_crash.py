"""transfer() killed mid-run, then recover() and a re-run: every row exactly once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rhosocial_ar import ConnectionManager, recover, transfer
from tests.conftest import SERVER_URLS, require_backend
from tests.stress import Crew, durations, report
from tests.test_twophase_crash import in_doubt
from tests.transfer_child import BATCH, CRASH_EXIT, ROWS, Archive, Outbox, configure, move

ROOT = Path(__file__).resolve().parent.parent
PAIRS = {
    "sqlite-sqlite": ("sqlite", "sqlite"),
    "pg-my": ("postgresql", "mysql"),
    "my-pg": ("mysql", "postgresql"),
}
KILLS = {
    "sqlite-sqlite": [("between_sides", 2), ("after_batch", 3)],
    "pg-my": [("after_prepares", 2), ("after_decision", 3), ("between_commits", 2)],
    "my-pg": [("after_prepares", 3), ("after_decision", 2), ("after_batch", 4)],
}
CASES = [(pair, step, nth) for pair, kills in KILLS.items() for step, nth in kills]


def urls(pair: str, tmp_path: Path) -> tuple[str, str]:
    source, target = PAIRS[pair]
    if source == "sqlite":
        return f"sqlite:///{tmp_path / 'src.db'}", f"sqlite:///{tmp_path / 'dst.db'}"
    require_backend(source)
    require_backend(target)
    return SERVER_URLS[source][0], SERVER_URLS[target][1]


@pytest.mark.parametrize("pair, step, nth", CASES)
def test_killed_transfer_resumes_exactly_once(tmp_path, pair, step, nth):
    source, target = urls(pair, tmp_path)
    ConnectionManager.reset()
    configure(source, target)
    try:
        recover()
        for model in (Outbox, Archive):
            model.drop_table()
            model.create_table()
        Outbox.bulk_insert([{"id": i, "body": "x" * (i % 7)} for i in range(1, ROWS + 1)])

        child = subprocess.run(
            [sys.executable, "-m", "tests.transfer_child", source, target, step, str(nth)],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert child.returncode == CRASH_EXIT, child.stderr
        moved_before = Archive.count()
        assert 0 < moved_before < ROWS or step == "between_sides"

        recover()
        assert in_doubt(["source", "target"]) == []
        left = set(Outbox.pluck("id"))
        assert left | set(Archive.pluck("id")) == set(range(1, ROWS + 1))   # nothing lost
        result = move()                                   # the re-run continues
        assert result.rows == len(left) and Outbox.count() == 0
        ids = Archive.pluck("id")
        assert sorted(ids) == list(range(1, ROWS + 1))    # each row exactly once
        assert Archive.find(13).length == 13 % 7
        assert result.batches == -(-result.rows // BATCH)
    finally:
        ConnectionManager.reset()


def test_result_and_strategies(tmp_path):
    ConnectionManager.reset()
    configure(f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}")
    try:
        for model in (Outbox, Archive):
            model.create_table()
        Outbox.bulk_insert([{"id": i, "body": "abc"} for i in range(1, 121)])
        from rhosocial_ar import transfer

        copied = transfer(Outbox.where("id > ?", 20), Archive,
                          map={"id": "id", "body": "body", "length": lambda r: 3},
                          batch_size=50, progress=False)
        assert (copied.rows, copied.batches, copied.strategy) == (100, 2, "idempotent")
        assert Outbox.count() == 120 and Archive.count() == 100      # copy keeps the source
        again = transfer(Outbox.query(), Archive,
                         map={"id": "id", "body": "body", "length": lambda r: 3},
                         batch_size=50, progress=False)
        assert again.rows == 120 and Archive.count() == 120           # upserts: no duplicate
        assert again.seconds > 0 and again.rows_per_second > 0
    finally:
        ConnectionManager.reset()


@pytest.mark.parametrize("seconds", durations(4, 30))
def test_recovery_racing_live_transfers(seconds):
    """recover() in 2 threads beside 4 threads of two-phase transfers: it skips what a
    live coordinator is finishing (busy) and never raises; every row lands exactly once."""
    require_backend("postgresql")
    ConnectionManager.reset()
    configure(SERVER_URLS["postgresql"][0], SERVER_URLS["postgresql"][1])
    try:
        recover()
        for model in (Outbox, Archive):
            model.drop_table()
            model.create_table()
        deadline = time.monotonic() + seconds
        done = threading.Event()

        def transfers(index: int) -> list[int]:
            moved: list[int] = []
            while time.monotonic() < deadline:
                ids = [index * 10_000_000 + len(moved) + k for k in range(1, 21)]
                Outbox.bulk_insert([{"id": i, "body": "x"} for i in ids])
                result = transfer(Outbox.where(id=ids), Archive,
                                  map={"id": "id", "body": "body", "length": lambda r: 1},
                                  batch_size=5, delete_source=True, progress=False)
                assert result.rows == len(ids)
                moved += ids
            return moved

        def recovering(index: int) -> dict[str, int]:
            seen = {"runs": 0, "busy": 0, "finished": 0}
            while not done.is_set():
                report = recover()
                seen["runs"] += 1
                seen["busy"] += len(report.busy)
                seen["finished"] += len(report.committed) + len(report.rolled_back)
            return seen

        movers = Crew(4, transfers, "transfer").start()
        recoverers = Crew(2, recovering, "recover").start()
        movers.join(seconds + 60)
        done.set()
        recoverers.join(60)
        movers.raise_first()
        recoverers.raise_first()

        assert recover().skipped == []
        assert in_doubt(["source", "target"]) == []
        expected = sorted(i for ids in movers.results.values() for i in ids)
        assert sorted(Archive.pluck("id")) == expected          # each row exactly once
        assert Outbox.count() == 0
        runs = [r["runs"] for r in recoverers.results.values()]
        report(rows=len(expected), recover_runs=sum(runs),
               busy=sum(r["busy"] for r in recoverers.results.values()),
               finished=sum(r["finished"] for r in recoverers.results.values()))
        assert min(runs) > 1                                     # it did race them
    finally:
        ConnectionManager.reset()
