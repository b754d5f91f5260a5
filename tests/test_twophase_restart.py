"""Prepared transactions survive a server restart and are then recovered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rhosocial_ar import ConnectionManager, recover
from tests.conftest import SERVER_URLS, require_backend
from tests.servers import restart_mariadb, restart_postgresql
from tests.test_twophase_crash import ROWS, fresh_pair, in_doubt
from tests.twophase_child import CRASH_EXIT, Source, Target, configure

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("step, committed", [("after_decision", True), ("after_prepares", False)])
def test_servers_restarted_while_in_doubt(step, committed):
    require_backend("postgresql")
    require_backend("mysql")
    left, right = SERVER_URLS["postgresql"][0], SERVER_URLS["mysql"][1]
    try:
        fresh_pair(left, right)
        child = subprocess.run([sys.executable, "-m", "tests.twophase_child", left, right, step],
                               cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert child.returncode == CRASH_EXIT, child.stderr
        assert len(in_doubt(["left", "right"])) == 2
        ConnectionManager.reset()

        restart_postgresql(left)
        restart_mariadb(right)

        configure(left, right)
        assert len(in_doubt(["left", "right"])) == 2      # both survived the restarts
        report = recover()
        assert len(report.committed if committed else report.rolled_back) == 2, str(report)
        assert in_doubt(["left", "right"]) == []
        where = Target if committed else Source
        assert sorted(where.pluck("id")) == list(range(1, ROWS + 1))
        assert (Source if committed else Target).count() == 0
    finally:
        ConnectionManager.reset()
