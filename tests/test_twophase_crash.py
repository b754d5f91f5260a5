"""The crash matrix: a coordinator killed at every step, then recover()."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rhosocial_ar import ConnectionManager, dialects, recover
from rhosocial_ar.decision_log import XID_PREFIX
from tests.conftest import SERVER_URLS, require_backend
from tests.twophase_child import CRASH_EXIT, Source, Target, configure

ROOT = Path(__file__).resolve().parent.parent
ROWS = 20
STEPS = {
    # step -> where the rows must end: rolled back (source) or committed (target)
    "before_prepare": "source",
    "between_prepares": "source",
    "after_prepares": "source",
    "after_decision": "target",
    "between_commits": "target",
    "after_commits": "target",
    "none": "target",
}
PAIRS = {
    "pg-pg": ("postgresql", 0, "postgresql", 1),
    "my-my": ("mysql", 0, "mysql", 1),
    "pg-my": ("postgresql", 0, "mysql", 1),
    "lite-pg": ("sqlite", 0, "postgresql", 1),
}


def urls(pair: str, tmp_path: Path) -> tuple[str, str]:
    left, li, right, ri = PAIRS[pair]
    for backend in (left, right):
        if backend != "sqlite":
            require_backend(backend)

    def url(backend: str, index: int) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / 'lite.db'}"
        return SERVER_URLS[backend][index]

    return url(left, li), url(right, ri)


def in_doubt(names: list[str]) -> list[str]:
    found = []
    for name in names:
        conn = ConnectionManager.get(name)
        if conn.dialect.name == "sqlite":
            continue
        with conn.engine.connect() as sa_conn:
            found += dialects.in_doubt_xids(sa_conn, XID_PREFIX)
    return found


@pytest.fixture
def pair_setup(request, tmp_path):
    def make(pair: str) -> tuple[str, str]:
        left, right = urls(pair, tmp_path)
        ConnectionManager.reset()
        configure(left, right)
        recover()                      # leftovers of an earlier run
        for model in (Source, Target):
            model.drop_table()
            model.create_table()
        Source.bulk_insert([{"id": i, "payload": f"row {i}"} for i in range(1, ROWS + 1)])
        return left, right

    yield make
    ConnectionManager.reset()


@pytest.mark.parametrize("step", list(STEPS))
@pytest.mark.parametrize("pair", list(PAIRS))
def test_crash_then_recover(pair_setup, pair, step):
    left, right = pair_setup(pair)
    child = subprocess.run(
        [sys.executable, "-m", "tests.twophase_child", left, right, step],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    single_branch = PAIRS[pair][0] == "sqlite"
    never_reached = single_branch and step in ("between_prepares", "between_commits")
    if step == "none" or never_reached:
        assert child.returncode == 0, child.stderr
    else:
        assert child.returncode == CRASH_EXIT, child.stderr

    ConnectionManager.reset()
    configure(left, right)
    report = recover()
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
    again = recover()                                # idempotent
    assert (again.committed, again.rolled_back, again.skipped) == ([], [], [])
    assert in_doubt(["left", "right"]) == []

    source_ids = Source.pluck("id")
    target_ids = Target.pluck("id")
    assert sorted(source_ids + target_ids) == list(range(1, ROWS + 1))    # each row once
    expected = "target" if never_reached else STEPS[step]
    if expected == "source":
        assert len(source_ids) == ROWS
    else:
        assert len(target_ids) == ROWS


def test_recover_command_line(pair_setup, tmp_path):
    left, right = pair_setup("pg-my")
    child = subprocess.run([sys.executable, "-m", "tests.twophase_child", left, right,
                            "after_decision"], cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
    assert child.returncode == CRASH_EXIT, child.stderr
    app = tmp_path / "twophase_app.py"
    app.write_text("from tests.twophase_child import configure\n"
                   f"configure({left!r}, {right!r})\n")
    command = [sys.executable, "-m", "rhosocial_ar.cli", "recover", "--app", str(app)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("committed 2, rolled back 0, skipped 0")
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.stdout.startswith("committed 0, rolled back 0, skipped 0")
    assert sorted(Target.pluck("id")) == list(range(1, ROWS + 1)) and Source.count() == 0
