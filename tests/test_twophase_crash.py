"""The crash matrix: a coordinator killed at every step, then recover()."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from rhosocial_ar import ConnectionManager, InDoubtError, decision_log, dialects, recover
from rhosocial_ar.decision_log import XID_PREFIX
from tests.conftest import SERVER_URLS, require_backend
from tests.servers import scratch_postgresql
from tests.twophase_child import CRASH_EXIT, Source, Target, configure, move_all
from tests.twophase_faults import commit_acknowledgement_lost, fresh_sessions_killed, kill_sessions

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
# for the fault tests: the decision log (on the first) on MariaDB
LOG_ON_MARIADB = {"my-pg": ("mysql", 0, "postgresql", 1)}


def urls(pair: str, tmp_path: Path) -> tuple[str, str]:
    left, li, right, ri = PAIRS.get(pair) or LOG_ON_MARIADB[pair]
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


def fresh_pair(left: str, right: str) -> None:
    """Connections 'left' and 'right' on these URLs, empty tables and ROWS source rows."""
    ConnectionManager.reset()
    configure(left, right)
    recover()                      # leftovers of an earlier run
    for model in (Source, Target):
        model.drop_table()
        model.create_table()
    Source.bulk_insert([{"id": i, "payload": f"row {i}"} for i in range(1, ROWS + 1)])


@pytest.fixture
def pair_setup(request, tmp_path):
    def make(pair: str) -> tuple[str, str]:
        left, right = urls(pair, tmp_path)
        fresh_pair(left, right)
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


# -- lost acknowledgements: the outcome of a COMMIT is unknown -------------------------

def moved_exactly_once(where: type) -> None:
    """Every row is in ``where`` and nowhere else, once; nothing is left prepared."""
    assert in_doubt(["left", "right"]) == []
    assert sorted(where.pluck("id")) == list(range(1, ROWS + 1))
    assert (Target if where is Source else Source).count() == 0


@pytest.mark.parametrize("pair", ["pg-my", "my-pg"])
def test_decision_acknowledgement_lost(pair_setup, pair):
    """The COMMIT decision lands, then every session of the log's server dies: the
    coordinator reads the decision again and commits everything, rolling nothing back."""
    left, _ = pair_setup(pair)
    side = ConnectionManager.get("left").side_engine()
    with commit_acknowledgement_lost(side, kill=lambda: kill_sessions(left)) as fired:
        assert move_all() == ROWS
    assert fired
    assert recover().committed == []          # nothing was left for it
    moved_exactly_once(Target)


@pytest.mark.parametrize("pair", ["pg-my", "my-pg"])
def test_decision_unreadable_after_a_lost_acknowledgement(pair_setup, pair):
    """When the log cannot be read again either, InDoubtError: nothing is rolled back,
    and recover() commits every branch."""
    left, _ = pair_setup(pair)
    side = ConnectionManager.get("left").side_engine()
    kill = lambda: kill_sessions(left)  # noqa: E731
    with commit_acknowledgement_lost(side, kill=kill) as fired, \
            fresh_sessions_killed(side, kill, once=fired) as killed:
        with pytest.raises(InDoubtError, match="not acknowledged") as raised:
            move_all()
    assert killed and raised.value.xid
    assert len(in_doubt(["left", "right"])) == 2          # both still prepared
    report = recover()
    assert len(report.committed) == 2 and report.skipped == [], str(report)
    moved_exactly_once(Target)


@pytest.fixture(scope="module")
def plain_postgresql():
    """A PostgreSQL without prepared transactions: it can join only as the last resource."""
    require_backend("postgresql")
    with scratch_postgresql(max_prepared_transactions="0") as url:
        yield url


@pytest.mark.parametrize("landed", [True, False], ids=["landed", "not-landed"])
def test_last_resource_commit_acknowledgement_lost(plain_postgresql, landed):
    """The last resource's COMMIT (its work and the decision) gets no answer: nothing
    prepared is rolled back until its own log says what happened."""
    require_backend("mysql")
    left, right = plain_postgresql, SERVER_URLS["mysql"][1]
    try:
        fresh_pair(left, right)
        engine = ConnectionManager.get("left").engine          # the last resource
        with commit_acknowledgement_lost(engine, kill=lambda: kill_sessions(left),
                                         landed=landed) as fired:
            if landed:
                assert move_all() == ROWS
            else:
                with pytest.raises(sa.exc.OperationalError):
                    move_all()
        assert fired
        assert recover().committed == []
        moved_exactly_once(Target if landed else Source)
    finally:
        ConnectionManager.reset()


def test_recover_of_some_connections_keeps_the_decisions_of_the_others(pair_setup):
    """recover(['left']) must not prune the COMMIT that the branch on 'right' still needs."""
    left, right = pair_setup("pg-pg")
    child = subprocess.run([sys.executable, "-m", "tests.twophase_child", left, right,
                            "after_decision"], cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
    assert child.returncode == CRASH_EXIT, child.stderr
    log = ConnectionManager.get("left")
    table = decision_log.log_table
    with log.engine.begin() as conn:                       # a decision old enough to prune
        conn.execute(table.update().values(decided_at=sa.func.now() - sa.text(
            "interval '30 days'")))
    assert len(recover(["left"]).committed) == 1
    report = recover()
    assert len(report.committed) == 1 and report.skipped == [], str(report)
    moved_exactly_once(Target)
    with log.engine.connect() as conn:                     # seen finished everywhere: forgotten
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0


@pytest.mark.parametrize("step", ["after_prepares", "after_decision"])
def test_branches_that_wrote_nothing_are_recovered(pair_setup, step):
    """MariaDB rolls back a prepared branch that wrote nothing when it is finished
    (XA_RBROLLBACK, 1402): for recover() that branch is done, either way."""
    left, right = pair_setup("pg-my")
    Source.all_rows().delete()            # nothing to move: the MariaDB branch writes nothing
    child = subprocess.run([sys.executable, "-m", "tests.twophase_child", left, right, step],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert child.returncode == CRASH_EXIT, child.stderr
    ConnectionManager.reset()
    configure(left, right)
    report = recover()
    assert report.skipped == [] and report.busy == [], str(report)
    finished = report.rolled_back if step == "after_prepares" else report.committed
    assert len(finished) == 2, str(report)
    assert in_doubt(["left", "right"]) == []
    assert Source.count() == 0 and Target.count() == 0
