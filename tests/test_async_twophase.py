"""Two-phase commit on async connections: the crash matrix, recovery and transfer, awaited.

The coordinator, ``arecover()`` and ``atransfer()`` run the sync protocol in
the bridge; the children of the sync crash tests have async twins here
(``tests.async_twophase_child``, ``tests.async_transfer_child``), killed at
the same steps.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from rhosocial_ar import (
    ConnectionManager,
    ConnectionModeError,
    Transaction,
    TwoPhaseNotSupported,
    arecover,
    decision_log,
    get_connection,
    two_phase,
)
from rhosocial_ar.aio import run
from tests.async_transfer_child import amove
from tests.async_twophase_child import amove_all
from tests.conftest import SERVER_URLS, _missing, require_backend
from tests.test_async import ASYNC_DRIVERS, async_url
from tests.test_twophase_crash import STEPS, in_doubt
from tests.transfer_child import BATCH, CRASH_EXIT, Archive, Outbox
from tests.transfer_child import ROWS as TRANSFER_ROWS
from tests.twophase_child import Source, Target, configure

ROOT = Path(__file__).resolve().parent.parent
R = TypeVar("R")
ROWS = 20
PAIRS = {
    "pg-pg": ("postgresql", 0, "postgresql", 1),
    "my-my": ("mysql", 0, "mysql", 1),
    "pg-my": ("postgresql", 0, "mysql", 1),
    "lite-pg": ("sqlite", 0, "postgresql", 1),
}


def aurl(backend: str, index: int, tmp_path: Path) -> str:
    """The async-driver URL of a test database (a file under ``tmp_path`` for SQLite)."""
    drivername, module = ASYNC_DRIVERS[backend]
    try:
        __import__(module)
    except ImportError as exc:
        _missing(f"ASYNC DRIVER NOT INSTALLED, async two-phase tests did not run: {exc}")
    if backend == "sqlite":
        return f"{drivername}:///{tmp_path / f'lite{index}.db'}"
    require_backend(backend)
    return async_url(SERVER_URLS[backend][index], drivername)


def arun(left: str, right: str, main: Callable[[], Awaitable[R]]) -> R:
    """Configure 'left' and 'right', await ``main()``, close the pools, on one event loop."""
    async def wrapper() -> R:
        ConnectionManager.reset()
        configure(left, right)
        try:
            return await main()
        finally:
            await ConnectionManager.areset()

    return asyncio.run(wrapper())


async def fresh_tables(*models: Any) -> None:
    await arecover()                       # leftovers of an earlier run
    for model in models:
        await model.adrop_table()
        await model.acreate_table()


def child(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("step", list(STEPS))
@pytest.mark.parametrize("pair", list(PAIRS))
def test_crash_then_arecover(tmp_path: Path, pair: str, step: str) -> None:
    lb, li, rb, ri = PAIRS[pair]
    left, right = aurl(lb, li, tmp_path), aurl(rb, ri, tmp_path)

    async def seed() -> None:
        await fresh_tables(Source, Target)
        await Source.abulk_insert([{"id": i, "payload": f"row {i}"} for i in range(1, ROWS + 1)])

    arun(left, right, seed)
    done = child("tests.async_twophase_child", left, right, step)
    single_branch = lb == "sqlite"
    never_reached = single_branch and step in ("between_prepares", "between_commits")
    if step == "none" or never_reached:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == CRASH_EXIT, done.stderr

    async def check() -> None:
        report = await arecover()
        assert report.skipped == [], str(report)
        branches = 1 if single_branch else 2
        left_in_doubt = {
            "after_prepares": branches, "after_decision": branches,
            "between_prepares": 0 if never_reached else 1,
            "between_commits": 0 if never_reached else 1,
        }.get(step, 0)
        finished = report.rolled_back if STEPS[step] == "source" else report.committed
        assert len(finished) == left_in_doubt, str(report)
        assert len(report.committed) + len(report.rolled_back) == left_in_doubt
        again = await arecover()                             # idempotent
        assert (again.committed, again.rolled_back, again.skipped) == ([], [], [])
        assert await run(in_doubt, ["left", "right"]) == []
        source_ids, target_ids = await Source.apluck("id"), await Target.apluck("id")
        assert sorted(source_ids + target_ids) == list(range(1, ROWS + 1))   # each row once
        expected = "target" if never_reached else STEPS[step]
        assert len(source_ids if expected == "source" else target_ids) == ROWS

    arun(left, right, check)


def test_a_failure_in_the_block_rolls_back_every_participant(tmp_path: Path) -> None:
    left, right = aurl("postgresql", 0, tmp_path), aurl("mysql", 1, tmp_path)

    async def main() -> None:
        await fresh_tables(Source, Target)
        await Source.acreate(id=1, payload="kept")
        with pytest.raises(RuntimeError, match="changed my mind"):
            async with two_phase("left", "right"):
                await Source.where(id=1).adelete()
                await Target.acreate(id=1, payload="never")
                raise RuntimeError("changed my mind")
        assert await Source.apluck("payload") == ["kept"] and await Target.acount() == 0
        assert await run(in_doubt, ["left", "right"]) == []
        assert await amove_all() == 1                        # and the same block commits
        assert await Target.apluck("payload") == ["kept"] and await Source.acount() == 0

    arun(left, right, main)


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_a_two_phase_transaction_by_hand(tmp_path: Path, backend: str) -> None:
    """``Transaction(conn, two_phase=True)``: ``async with`` scopes it, then aprepare/acommit."""
    left, right = aurl(backend, 0, tmp_path), aurl(backend, 1, tmp_path)

    def xid() -> str:      # one recover() can parse: its decision log is on 'left'
        return str(decision_log.Xid(decision_log.Xid.new_gtrid(), 0, decision_log.name_tag("left")))

    async def main() -> None:
        await fresh_tables(Source, Target)
        await run(decision_log.ensure_table, get_connection("left"))
        tx = Transaction(get_connection("left"), two_phase=True)
        tx.xid = xid()
        async with tx:
            await Source.acreate(id=1, payload="one")
        await tx.aprepare()
        assert tx.state == "prepared" and await run(in_doubt, ["left"]) == [tx.xid]
        await tx.acommit()
        assert tx.state == "committed" and await Source.apluck("id") == [1]

        undone = Transaction(get_connection("left"), two_phase=True)
        undone.xid = xid()
        async with undone:
            await Source.acreate(id=2, payload="two")
        await undone.aprepare()
        await undone.arollback()
        assert undone.state == "rolled back" and await Source.apluck("id") == [1]

        left_over = Transaction(get_connection("left"), two_phase=True)
        left_over.xid = xid()
        async with left_over:
            await Source.acreate(id=3, payload="three")
        await left_over.aprepare()
        await left_over.aabandon()                           # for arecover(): no decision, abort
        report = await arecover()
        assert report.rolled_back == [("left", left_over.xid)], str(report)
        assert await Source.apluck("id") == [1]

    arun(left, right, main)


def test_aiosqlite_has_no_two_phase_as_sync_sqlite(tmp_path: Path) -> None:
    left, right = aurl("sqlite", 0, tmp_path), aurl("sqlite", 1, tmp_path)

    async def main() -> None:
        with pytest.raises(TwoPhaseNotSupported, match="connection 'left': SQLite has no "
                                                       "prepared transactions"):
            async with Transaction(get_connection("left"), two_phase=True):
                pass
        with pytest.raises(TwoPhaseNotSupported, match="at most one participant may lack "
                                                       "two-phase commit"):
            async with two_phase("left", "right"):
                pass

    arun(left, right, main)


def test_the_wrong_way_names_async_with(tmp_path: Path) -> None:
    left, right = aurl("postgresql", 0, tmp_path), aurl("mysql", 1, tmp_path)

    async def main() -> None:
        with pytest.raises(ConnectionModeError, match="connection 'left' is async: use async "
                                                      "with two_phase"):
            with two_phase("left", "right"):
                pass
        tx = Transaction(get_connection("left"), two_phase=True)
        with pytest.raises(ConnectionModeError, match="connection 'left' is async: use async "
                                                      "with TwoPhaseTransaction"):
            with tx:
                pass

    arun(left, right, main)


def test_each_recovery_takes_the_connections_of_its_kind(tmp_path: Path) -> None:
    """recover() leaves async connections to arecover() and the reverse, and says so."""
    require_backend("postgresql")
    require_backend("mysql")

    async def main() -> None:
        ConnectionManager.configure({"plain": {"url": SERVER_URLS["mysql"][0]}})
        report = await arecover()
        assert report.skipped == [("plain", "-", "sync connection: run recover() for it")]
        sync_report = await asyncio.to_thread(_recover_without_the_bridge)
        assert ("left", "-", "async connection: run await arecover() for it") in sync_report.skipped

    arun(aurl("postgresql", 0, tmp_path), aurl("mysql", 1, tmp_path), main)


def _recover_without_the_bridge() -> Any:
    from rhosocial_ar import recover

    return recover()


TRANSFER_KILLS = [("pg-my", "after_prepares", 2), ("pg-my", "after_decision", 3),
                  ("my-pg", "between_commits", 2), ("my-pg", "after_batch", 4),
                  ("lite-lite", "between_sides", 2)]
TRANSFER_PAIRS = {"pg-my": (("postgresql", 0), ("mysql", 1)),
                  "my-pg": (("mysql", 0), ("postgresql", 1)),
                  "lite-lite": (("sqlite", 0), ("sqlite", 1))}


@pytest.mark.parametrize(("pair", "step", "nth"), TRANSFER_KILLS)
def test_killed_atransfer_resumes_exactly_once(tmp_path: Path, pair: str, step: str,
                                                nth: int) -> None:
    (sb, si), (tb, ti) = TRANSFER_PAIRS[pair]
    source, target = aurl(sb, si, tmp_path), aurl(tb, ti, tmp_path)

    async def seed() -> None:
        await fresh_tables(Outbox, Archive)
        await Outbox.abulk_insert([{"id": i, "body": "x" * (i % 7)}
                                   for i in range(1, TRANSFER_ROWS + 1)])

    arun_transfer(source, target, seed)
    done = child("tests.async_transfer_child", source, target, step, str(nth))
    assert done.returncode == CRASH_EXIT, done.stderr

    async def resume() -> None:
        moved_before = await Archive.acount()
        assert 0 < moved_before < TRANSFER_ROWS or step == "between_sides"
        await arecover()
        assert await run(in_doubt, ["source", "target"]) == []
        left = set(await Outbox.apluck("id"))
        assert left | set(await Archive.apluck("id")) == set(range(1, TRANSFER_ROWS + 1))
        result = await amove()                                # the re-run continues
        assert result.rows == len(left) and await Outbox.acount() == 0
        assert sorted(await Archive.apluck("id")) == list(range(1, TRANSFER_ROWS + 1))
        assert (await Archive.afind(13)).length == 13 % 7
        assert result.batches == -(-result.rows // BATCH)

    arun_transfer(source, target, resume)


def arun_transfer(source: str, target: str, main: Callable[[], Awaitable[R]]) -> R:
    from tests.transfer_child import configure as configure_transfer

    async def wrapper() -> R:
        ConnectionManager.reset()
        configure_transfer(source, target)
        try:
            return await main()
        finally:
            await ConnectionManager.areset()

    return asyncio.run(wrapper())


def test_a_sync_reset_after_the_loop_drops_the_decision_logs_pool_quietly(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The decision log's side pool of an async connection, like its main pool, is dropped
    (not closed, which needs the bridge) by a sync reset() after the event loop has ended."""
    left, right = aurl("postgresql", 0, tmp_path), aurl("postgresql", 1, tmp_path)

    async def main() -> None:
        ConnectionManager.reset()
        configure(left, right)
        await fresh_tables(Source, Target)
        await Source.acreate(id=1, payload="one")
        assert await amove_all() == 1            # the decision is written through the side pool

    asyncio.run(main())
    caplog.set_level("ERROR", logger="sqlalchemy.pool")
    ConnectionManager.reset()
    assert [r.getMessage() for r in caplog.records] == []


def test_the_recover_command_finishes_async_connections_too(tmp_path: Path) -> None:
    """``rhosocial-ar recover`` runs arecover() for the async connections an app configures."""
    left, right = aurl("postgresql", 0, tmp_path), aurl("mysql", 1, tmp_path)

    async def seed() -> None:
        await fresh_tables(Source, Target)
        await Source.abulk_insert([{"id": i, "payload": f"row {i}"} for i in range(1, ROWS + 1)])

    arun(left, right, seed)
    assert child("tests.async_twophase_child", left, right, "after_decision").returncode == CRASH_EXIT
    app = tmp_path / "async_twophase_app.py"
    app.write_text("from rhosocial_ar import ConnectionManager\n"
                   "from tests.twophase_child import configure\n"
                   f"configure({left!r}, {right!r})\n"
                   f"ConnectionManager.configure('plain', {{'url': {SERVER_URLS['mysql'][0]!r}}})\n")
    command = [sys.executable, "-m", "rhosocial_ar.cli", "recover", "--app", str(app)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("committed 2, rolled back 0, skipped 0"), done.stdout

    async def check() -> None:
        assert await run(in_doubt, ["left", "right"]) == []
        assert sorted(await Target.apluck("id")) == list(range(1, ROWS + 1))
        assert await Source.acount() == 0

    arun(left, right, check)
