"""The benchmark harness runs end to end in a tiny mode (timings are not asserted).

    python -m pytest tests/test_bench.py -q

The transfer benchmark needs both servers; it runs on the test databases.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from importlib.util import find_spec
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import SERVER_URLS, require_backend

ROOT = Path(__file__).resolve().parent.parent
IMPLS = ["raw", "core", "orm", "peewee", "rhosocial_ar"]
KEYS = [f"W{n}" for n in range(1, 16)]
# statements each workload sends at scale 0.01 (W7's are checked apart): 50 inserts,
# one bulk insert, 50 lookups, 20 queries, 1 + 20 statements, 2 set-based updates,
# 20 upserts, 1 + 5 lazy loads...
STATEMENTS = {"W1": 50, "W2": 1, "W3": 1, "W4": 50, "W5": 20, "W6": 21, "W8": 20, "W9": 20,
              "W10": 20, "W11": 2, "W12": 20, "W13": 1, "W14": 6, "W15": 20}


def test_bench_runs_every_workload_and_verifies_counts(tmp_path: Path) -> None:
    impls = IMPLS
    if find_spec("peewee") is None:   # the 'bench' extra is not installed here
        warnings.warn("peewee is not installed: its benchmark implementation was not run "
                      "(pip install -e '.[bench]')", stacklevel=1)
        impls = [i for i in IMPLS if i != "peewee"]
    markdown, data = tmp_path / "results.md", tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--scale", "0.01", "--repetitions", "1", "--db", "sqlite",
         "--impl", ",".join(impls), "--markdown", str(markdown), "--json", str(data)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    out = done.stdout
    assert "median ms (ratio to the raw driver's median)" in out, out + done.stderr
    assert "Machine:" in out and "SQLAlchemy" in out
    for key in KEYS:
        assert f"\n{key} " in out
    header = next(line for line in out.splitlines() if line.startswith("workload") and "raw" in line)
    assert header.split()[1:1 + len(impls)] == impls
    assert "no slower than core" in header and "exempt: Core returns bare rows" in out
    assert re.search(r"^SQLite \S+: rhosocial_ar (met every target|MISSED)", out, re.M)

    records = json.loads(data.read_text())["records"]
    assert {(r["impl"], r["workload"]) for r in records} == {(i, k) for i in impls for k in KEYS}
    for record in records:
        assert record["problems"] == [], record
        assert record["seconds"] > 0
        assert record["statements"] == STATEMENTS.get(record["workload"],
                                                      record["statements"]), record
    counts = {(r["impl"], r["workload"]): r["statements"] for r in records}
    for impl in impls:
        assert 2 <= counts[impl, "W7"] <= 3
    assert markdown.read_text().count("| W1 ") == 3      # medians, minimums, statements
    assert done.returncode == 0 and "FAIL" not in out

    # --compare: the run against itself changes nothing
    from bench import report

    summary = report.summarize(records)
    compared = report.comparison(summary, summary, ["sqlite"], impls, ["W1", "W7"], 0.01)
    assert compared.count("(1.00×)") == 2 * len(impls)


def test_bench_fails_loudly_on_n_plus_one(tmp_path: Path) -> None:
    """A W7 that loads posts per user is reported as N+1 and fails the run."""
    done = subprocess.run(
        [sys.executable, "-c", (
            "import sys; from bench import child; from bench.impls import raw\n"
            "def lazy(self):\n"
            "    cur = self._begin(); cur.execute('SELECT id, name, email, age, created_at FROM users')\n"
            "    users = cur.fetchall(); self._posts = {}\n"
            "    for u in users:\n"
            "        cur.execute('SELECT id, user_id, title, body FROM posts WHERE user_id = ?', (u[0],))\n"
            "        self._posts[u[0]] = cur.fetchall()\n"
            "    self.conn.commit(); return users, sum(len(p) for p in self._posts.values())\n"
            "raw.Impl.w7_eager = lazy\n"
            "sys.exit(child.main(sys.argv[1:]))\n"),
         json.dumps({"impl": "raw", "target": {"dialect": "sqlite", "dir": str(tmp_path)},
                     "workloads": ["W7"], "scale": 0.01})],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["statements"] == 11
    assert any(p.startswith("N+1 DETECTED") for p in record["problems"]), record


def test_transfer_benchmark_moves_every_row_once(tmp_path: Path) -> None:
    """Plain copy and two-phase transfer() PostgreSQL -> MariaDB, checked row by row."""
    require_backend("postgresql")
    require_backend("mysql")
    from bench import transfer

    markdown, data = tmp_path / "transfer.md", tmp_path / "transfer.json"
    pg_url, mysql_url = SERVER_URLS["postgresql"][0], SERVER_URLS["mysql"][0]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench", "--transfer", "only", "--repetitions", "1",
             "--transfer-rows", "2500", "--pg-url", pg_url, "--mysql-url", mysql_url,
             "--markdown", str(markdown), "--json", str(data)],
            cwd=ROOT, capture_output=True, text=True, timeout=180,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
    finally:
        for url, table in ((pg_url, transfer.SOURCE), (mysql_url, transfer.DESTINATION)):
            engine = sa.create_engine(url)
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
            engine.dispose()
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Transfer PostgreSQL → MariaDB, batches of 1,000" in out and "FAIL" not in out
    assert "W1 " not in out                      # --transfer only: no workload ran
    rows = {line.split("  ")[0]: line.split() for line in out.splitlines()
            if line.startswith(("plain copy", "transfer() two-phase"))}
    assert set(rows) == {transfer.METHODS["plain"], transfer.METHODS["transfer"]}
    for cells in rows.values():
        assert "2,500" in cells and "1,000" in cells
    verdict = next(line for line in out.splitlines() if line.startswith("transfer() moves rows at"))
    assert verdict.endswith(("met", "MISSED"))   # timings are not asserted, only reported

    records = json.loads(data.read_text())["records"]
    assert sorted(r["impl"] for r in records) == ["plain", "transfer"]
    for record in records:
        assert record["problems"] == [], record   # every row moved exactly once, none left
        assert record["rows"] == 2500 and record["seconds"] > 0
    assert markdown.read_text().count("| 2,500 | 1,000 |") == 2


def test_target_verdicts_say_when_the_runs_cannot_decide() -> None:
    """The target column gives the ratio's bootstrap interval and flags a verdict inside the noise."""
    from bench import report

    def judged(mine: list[float], raw: list[float], limit: float = 1.3) -> str:
        records = [{"db": "postgresql", "impl": impl, "workload": "W5", "seconds": ms / 1000,
                    "statements": 2000, "problems": []}
                   for impl, times in (("raw", raw), ("rhosocial_ar", mine)) for ms in times]
        summary = report.summarize(records)
        return report._targets(summary, "postgresql", "W5", ["raw", "rhosocial_ar"])[0]

    steady = [100.0, 101.0, 99.0, 100.0, 100.5, 99.5, 100.0]
    for factor, verdict in ((1.1, "met"), (1.6, "MISSED")):
        found = re.fullmatch(r"≤ 1\.3×: (\S+)× (\w+) \((\S+)–(\S+)\)",
                             judged([x * factor for x in steady], steady))
        assert found is not None and found[2] == verdict
        ratio, low, high = (float(found[i]) for i in (1, 3, 4))
        assert ratio == factor and low < ratio < high and high - low < 0.05
    noisy = [60.0, 150.0, 100.0, 130.0, 80.0, 120.0, 95.0]
    verdict = judged([x * 1.2 for x in noisy], noisy)
    assert verdict.startswith("≤ 1.3×: 1.20× met (") and verdict.endswith(", within noise)")
    low, high = report.ratio_interval([x * 1.2 for x in noisy], noisy)
    assert low < 1.2 < 1.3 < high
    assert report.ratio_interval(noisy, noisy) == report.ratio_interval(noisy, noisy)  # seeded
    assert judged([130.0], [100.0]) == "≤ 1.3×: 1.30× met (too few runs to judge the noise)"


def test_core_verdict_names_the_exempt_workloads() -> None:
    """rhosocial_ar must not be slower than Core, except where Core returns bare rows."""
    from bench import report, workloads

    def judged(key: str, mine: float, core: float) -> list[str]:
        records = [{"db": "sqlite", "impl": impl, "workload": key, "seconds": ms / 1000,
                    "statements": 1, "problems": []}
                   for impl, ms in (("raw", 10.0), ("core", core), ("rhosocial_ar", mine))]
        return report._targets(report.summarize(records), "sqlite", key,
                               ["raw", "core", "rhosocial_ar"])

    assert len(judged("W8", 20.0, 30.0)) == len(report.TARGET_COLUMNS)
    assert judged("W8", 20.0, 30.0)[2] == "yes"
    assert judged("W14", 36.0, 30.0)[2] == "NO: 1.20× core"
    assert judged("W3", 36.0, 30.0)[2] == "exempt: Core returns bare rows"
    assert set(workloads.CORE_EXEMPT) == {"W3", "W7", "W13"}
    assert judged("W12", 39.0, 50.0)[0].startswith("≤ 4×: 3.90× met")   # a single-row write
    assert judged("W13", 31.0, 50.0)[0].startswith("≤ 3×: 3.10× MISSED")
    # under each median table, one line names what was missed
    assert report._missed("SQLite", {"W8": judged("W8", 20.0, 30.0)}, set()) == (
        "SQLite: rhosocial_ar met every target it was judged on.")
    verdicts = {"W8": judged("W8", 20.0, 30.0), "W11": ["—"] * 3, "W14": judged("W14", 36.0, 30.0)}
    assert report._missed("SQLite", verdicts, {"W11"}) == (
        "SQLite: rhosocial_ar MISSED 2 workload(s)' targets: W11 (failed its checks), "
        "W14 (target ratio; no slower than core)")


def test_transfer_verdict_gives_the_shares_interval() -> None:
    """The transfer's share of the plain copy's rate comes with its interval, as the ratios do."""
    from bench import report, transfer

    def verdict(plain: list[float], moved: list[float]) -> str:
        records = [{"db": transfer.DB, "impl": impl, "rows": 1000, "seconds": s,
                    "problems": []}
                   for impl, times in (("plain", plain), ("transfer", moved)) for s in times]
        text = transfer.table(records, report.render_rows)
        return next(line for line in text.splitlines() if line.startswith("transfer() moves"))

    steady = [2.0, 2.02, 1.98, 2.0, 2.01]
    found = re.search(r"at 80\.0% of the plain copy's rate, target ≥ 50%: met \((\S+)%–(\S+)%\)$",
                      verdict(steady, [s * 1.25 for s in steady]))
    assert found is not None and 79 < float(found[1]) <= 80 <= float(found[2]) < 81
    noisy = [1.5, 2.5, 2.0, 1.7, 2.3]
    assert verdict(noisy, [s * 2.04 for s in noisy]).endswith(", within noise)")
    assert verdict(steady[:2], steady[:2]).endswith("target ≥ 50%: met")   # two runs: no interval
