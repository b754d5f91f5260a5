"""The async benchmark runs every implementation, checks every result and judges issue 20's targets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import async_run
from tests.conftest import require_backend

ROOT = Path(__file__).resolve().parent.parent


def test_every_implementation_runs_every_workload_with_checked_results(tmp_path: Path) -> None:
    require_backend("postgresql")
    for module in ("asyncpg", "tortoise", "greenlet"):
        pytest.importorskip(module, reason="pip install -e '.[async,bench]'")
    out = tmp_path / "async.md"
    done = subprocess.run([sys.executable, "-m", "bench.async_run", "-r", "1", "--scale", "0.02",
                           "--pool", "5", "--markdown", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    rows = [line for line in out.read_text().splitlines() if line.startswith("| A")]
    assert [row.split()[1] for row in rows] == ["A1", "A2", "A3", "A4"]
    for row in rows:            # a time for each of the five, and both verdicts
        assert row.count("×)") == 5 and row.count("≤ 1.5×") == 1, row


def test_a_wrong_result_fails_the_run() -> None:
    records = [{"impl": "asyncpg", "workload": "A1", "seconds": 0.1, "problems": []},
               {"impl": "rhosocial_ar", "workload": "A1", "seconds": 0.2,
                "problems": ["1 of 5 results wrong"]}]
    args = async_run.parse_args(["--impl", "asyncpg,rhosocial_ar", "--workloads", "A1"])
    text = async_run.table(args, records, markdown=False)
    assert "FAIL" in text and "rhosocial_ar A1: 1 of 5 results wrong" in text
    assert async_run._verdict(records, "A1") == ["", ""]     # a failed run is not judged


def test_the_verdicts() -> None:
    records = [{"impl": impl, "workload": "A2", "seconds": seconds, "problems": []}
               for impl, seconds in [("asyncpg", 1.0), ("orm", 2.0), ("tortoise", 1.5),
                                     ("rhosocial_ar", 1.4)]]
    assert async_run._verdict(records, "A2") == ["≤ 1.5×: 1.40× met", "met"]
    records[-1]["seconds"] = 1.6
    assert async_run._verdict(records, "A2") == ["≤ 1.5×: 1.60× MISSED",
                                                 "MISSED: not faster than tortoise"]
