"""Moving rows PostgreSQL -> MariaDB: a plain batched copy against two-phase ``transfer()``.

    python -m bench --db postgresql,mysql            # the workloads, then this table
    python -m bench --transfer only -r 5             # this table alone
    python -m bench.transfer '{"method": "transfer", "pg": "postgresql://root@127.0.0.1/db",
                               "mysql": "mysql://root@127.0.0.1/db", "rows": 100000}'

Issue 6's target: ``transfer()`` in batches of 1,000 moves rows at half the
rate of a plain copy or better. Both methods move the same rows (the users
schema with explicit ids) from ``bench_transfer_src`` on PostgreSQL to
``bench_transfer_dst`` on MariaDB, deleting them from the source:

- ``plain copy``: the raw drivers, what a careful script does without
  atomicity: read 1,000 rows in keyset order, ``executemany`` them into
  MariaDB and commit, delete them from PostgreSQL and commit, and again;
- ``transfer``: ``transfer(Source.query(), Target, batch_size=1000,
  delete_source=True)``, every batch one two-phase transaction with its
  decision logged.

Each run is a child process on fresh tables, seeded with ``COPY`` and
analysed outside the timing, with both sides connected and warmed up first.
Afterwards the target must hold every row exactly once, with its values,
and the source none. Runs of the two methods alternate; a file lock keeps
two benchmarks on this machine from dropping each other's tables.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import report, schema
from .servers import MysqlTarget, PostgresTarget

ROWS = 100_000          # at scale 1: about a second and a half for the plain copy
BATCH = 1000
TARGET_SHARE = 0.5      # transfer()'s rate / the plain copy's rate, at least
SOURCE, DESTINATION = "bench_transfer_src", "bench_transfer_dst"
COLUMNS = ("id", *schema.USER_COLUMNS)
METHODS = {"plain": "plain copy (raw drivers, not atomic)",
           "transfer": "transfer() two-phase (rhosocial_ar)"}
DB = "postgresql->mysql"     # the ``db`` of its records in --json
WORKLOAD = "transfer"

_USER_COLUMNS_SQL = ("name VARCHAR(100) NOT NULL, email VARCHAR(255) NOT NULL, "
                     "age INTEGER NOT NULL")
_DDL = {
    "postgresql": [f"DROP TABLE IF EXISTS {SOURCE}",
                   f"CREATE TABLE {SOURCE} (id INTEGER PRIMARY KEY, {_USER_COLUMNS_SQL}, "
                   "created_at TIMESTAMP NOT NULL)"],
    "mysql": [f"DROP TABLE IF EXISTS {DESTINATION}",
              f"CREATE TABLE {DESTINATION} (id INTEGER NOT NULL PRIMARY KEY, {_USER_COLUMNS_SQL}, "
              "created_at DATETIME(6) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"],
}


def rows_for(count: int) -> list[dict[str, Any]]:
    """The rows a run moves: users 1..count, their ids included."""
    return [{"id": i, **schema.user_row(i, prefix="moved")} for i in range(1, count + 1)]


# -- in the child: one timed run ----------------------------------------------------------


def plain_copy(pg: PostgresTarget, my: MysqlTarget, batch: int) -> Callable[[], int]:
    """The baseline, connected: call it to move every row; returns the number moved."""
    read, write = pg.raw_connect(), my.raw_connect()
    columns = ", ".join(COLUMNS)
    select = f"SELECT {columns} FROM {SOURCE} WHERE id > %s ORDER BY id LIMIT {batch}"
    insert = f"INSERT INTO {DESTINATION} ({columns}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
    delete = f"DELETE FROM {SOURCE} WHERE id = ANY(%s)"
    for conn in (read, write):            # connected and past the first round trip
        conn.cursor().execute("SELECT 1")
        conn.commit()

    def run() -> int:
        source, target = read.cursor(), write.cursor()
        moved, last = 0, 0
        while True:
            source.execute(select, (last,))
            rows = source.fetchall()
            if rows:
                target.executemany(insert, rows)
                write.commit()            # the target first: a crash duplicates, never loses
                source.execute(delete, ([row[0] for row in rows],))
            read.commit()
            moved += len(rows)
            if len(rows) < batch:
                return moved
            last = rows[-1][0]

    return run


def ar_transfer(pg: PostgresTarget, my: MysqlTarget, batch: int) -> Callable[[], int]:
    """rhosocial_ar's ``transfer()``, configured and warmed up: call it to move every row."""
    from rhosocial_ar import ActiveRecord, ConnectionManager, Field, transfer

    class UserRow(ActiveRecord):
        """The columns both sides share."""

        __abstract__ = True
        id: int = Field(primary_key=True, autoincrement=False)
        name: str = Field(max_length=100)
        email: str = Field(max_length=255)
        age: int
        created_at: datetime.datetime

    class Source(UserRow):
        __table_name__ = SOURCE
        __connection__ = "bench_pg"

    class Destination(UserRow):
        __table_name__ = DESTINATION
        __connection__ = "bench_mariadb"

    ConnectionManager.reset()
    ConnectionManager.configure({"bench_pg": {"url": pg.sa_url()},
                                 "bench_mariadb": {"url": my.sa_url()}})
    # warm up: engines, dialects, the capability checks and one (empty) two-phase batch
    transfer(Source.where("id < 0"), Destination, batch_size=batch, delete_source=True,
             progress=False)

    def run() -> int:
        result = transfer(Source.query(), Destination, batch_size=batch, delete_source=True,
                          progress=False)
        if result.strategy != "two-phase":
            raise RuntimeError(f"transfer() used the {result.strategy!r} strategy, not two-phase")
        return result.rows

    return run


def fresh(pg: PostgresTarget, my: MysqlTarget, rows: list[dict[str, Any]]) -> None:
    """Empty tables on both sides, the source seeded and analysed."""
    for target in (pg, my):
        cur = target.admin().cursor()
        for statement in _DDL[target.dialect]:
            cur.execute(statement)
    pg._seed(SOURCE, COLUMNS, rows)
    pg.admin().cursor().execute(f"VACUUM ANALYZE {SOURCE}")


def check(pg: PostgresTarget, my: MysqlTarget, rows: list[dict[str, Any]], moved: int) -> list[str]:
    """Every row in the target exactly once with its values, none left in the source."""
    problems = []
    if moved != len(rows):
        problems.append(f"reported {moved:,} rows moved, expected {len(rows):,}")
    left = pg.scalar(f"SELECT COUNT(*) FROM {SOURCE}")
    if left:
        problems.append(f"{left:,} row(s) left in the source")
    cur = my.admin().cursor()
    cur.execute(f"SELECT {', '.join(COLUMNS)} FROM {DESTINATION} ORDER BY id")
    got = [tuple(row) for row in cur.fetchall()]
    want = [tuple(row[c] for c in COLUMNS) for row in rows]
    if got != want:
        ids = [row[0] for row in got]
        missing = len(set(range(1, len(rows) + 1)) - set(ids))
        wrong = next((g for g, w in zip(got, want, strict=False) if g != w), None)
        problems.append(f"target holds {len(got):,} rows ({len(set(ids)):,} distinct ids, "
                        f"{missing:,} missing), expected {len(want):,}; first difference: {wrong}")
    return problems


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Fresh tables, one timed move with ``spec['method']``, the checks: one record."""
    pg, my = PostgresTarget(spec["pg"]), MysqlTarget(spec["mysql"])
    rows = rows_for(spec["rows"])
    batch = spec.get("batch", BATCH)
    try:
        fresh(pg, my, rows)
        move = (plain_copy if spec["method"] == "plain" else ar_transfer)(pg, my, batch)
        profiler = None
        if spec.get("profile"):
            from .child import _profiler

            profiler = _profiler()
            profiler.start()
        start = time.perf_counter()
        moved = move()
        seconds = time.perf_counter() - start
        if profiler is not None:
            from .child import _write_profile

            profiler.stop()
            _write_profile(profiler, spec["profile"], f"transfer-{spec['method']}")
        problems = check(pg, my, rows, moved)
    finally:
        pg.close()
        my.close()
    return {"impl": spec["method"], "workload": WORKLOAD, "rows": len(rows), "batch": batch,
            "seconds": seconds, "statements": None, "transaction_control": None,
            "problems": problems}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    try:
        record = run_one(spec)
    except Exception:
        record = {"impl": spec["method"], "workload": WORKLOAD, "rows": spec["rows"],
                  "batch": spec.get("batch", BATCH), "seconds": None, "statements": None,
                  "transaction_control": None,
                  "problems": ["crashed: " + traceback.format_exc(limit=8)]}
    print(json.dumps(record), flush=True)
    return 1 if record["problems"] else 0


# -- in the parent: repetitions and the table -----------------------------------------------


def _lock() -> Any:
    """One transfer run at a time on this machine: they share the two tables."""
    handle = open(os.path.join(tempfile.gettempdir(), "rhosocial_ar_bench_transfer.lock"), "w")  # noqa: SIM115
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def measure(pg_url: str, mysql_url: str, rows: int, repetitions: int, timeout: float,
            profile: str | None = None) -> list[dict[str, Any]]:
    """``repetitions`` runs of each method, alternating, each in its own process."""
    records = []
    env = dict(os.environ, PYTHONHASHSEED="0")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for rep in range(1, repetitions + 1):
        for method in METHODS:
            spec = {"method": method, "pg": pg_url, "mysql": mysql_url, "rows": rows,
                    "batch": BATCH, "profile": profile}
            start = time.perf_counter()
            lock = _lock()
            try:
                done = subprocess.run([sys.executable, "-m", "bench.transfer", json.dumps(spec)],
                                      cwd=root, env=env, capture_output=True, text=True,
                                      timeout=timeout)
                found = [json.loads(line) for line in done.stdout.splitlines()
                         if line.startswith("{")]
                error = "" if found else (f"exit status {done.returncode}; stderr:\n"
                                          f"{done.stderr.strip()[-3000:]}")
            except subprocess.TimeoutExpired:
                found, error = [], f"timed out after {timeout:.0f} s"
            finally:
                lock.close()
            record = found[-1] if found else {
                "impl": method, "workload": WORKLOAD, "rows": rows, "batch": BATCH,
                "seconds": None, "statements": None, "transaction_control": None,
                "problems": [f"no result: {error}"]}
            record.update(db=DB, repetition=rep)
            records.append(record)
            status = ", FAILED" if record["problems"] else ""
            print(f"[transfer] repetition {rep}/{repetitions} {method:<13} "
                  f"{time.perf_counter() - start:6.1f} s{status}", file=sys.stderr, flush=True)
    return records


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """method -> rows, median and min seconds, median rows/s, problems."""
    summary = {}
    for method in METHODS:
        runs = [r for r in records if r.get("db") == DB and r["impl"] == method]
        if not runs:
            continue
        seconds = [r["seconds"] for r in runs if r["seconds"] is not None]
        summary[method] = {
            "rows": runs[0]["rows"], "runs": len(seconds), "seconds": seconds,
            "median": statistics.median(seconds) if seconds else None,
            "min": min(seconds) if seconds else None,
            "rate": statistics.median(runs[0]["rows"] / s for s in seconds) if seconds else None,
            "problems": sorted({p for r in runs for p in r["problems"]}),
        }
    return summary


def share(summary: dict[str, dict[str, Any]]) -> float | None:
    """transfer()'s median rate as a fraction of the plain copy's."""
    plain, ar = summary.get("plain"), summary.get("transfer")
    if not plain or not ar or not plain["rate"] or ar["rate"] is None:
        return None
    return float(ar["rate"] / plain["rate"])


def _noise(summary: dict[str, dict[str, Any]], ratio: float) -> str:
    """The share's 95% bootstrap interval, and whether the runs decide the verdict."""
    plain, ar = summary["plain"]["seconds"], summary["transfer"]["seconds"]
    if min(len(plain), len(ar)) < report.MIN_RUNS_FOR_INTERVAL:
        return ""
    low, high = report.ratio_interval(plain, ar)   # same rows: the seconds' ratio is the share's
    sure = low >= TARGET_SHARE if ratio >= TARGET_SHARE else high < TARGET_SHARE
    return f" ({low:.1%}–{high:.1%}{'' if sure else ', within noise'})"


def table(records: list[dict[str, Any]], render: Callable[[list[list[str]], bool], str],
          markdown: bool = False, earlier: list[dict[str, Any]] | None = None) -> str:
    """The transfer table with the verdict on the target; ``earlier``: a --json run to compare."""
    summary = summarize(records)
    if not summary:
        return ""
    before = summarize(earlier or [])
    heading = "### " if markdown else ""
    reps = max(s["runs"] for s in summary.values())
    rows = [["method", "rows", "batch", "median s", "min s", "rows/s (median)", "share of plain"]
            + (["earlier rows/s → now"] if before else [])]
    plain_rate = (summary.get("plain") or {}).get("rate")
    for method, entry in summary.items():
        rate = entry["rate"]
        cells = [METHODS[method], f"{entry['rows']:,}", f"{BATCH:,}", _seconds(entry["median"]),
                 _seconds(entry["min"]), "—" if rate is None else f"{rate:,.0f}",
                 f"{rate / plain_rate:.0%}" if rate and plain_rate else "—"]
        if before:   # rates, not seconds: the earlier run may have moved more or fewer rows
            old = (before.get(method) or {}).get("rate")
            cells.append("—" if not old or rate is None else
                         f"{old:,.0f} → {rate:,.0f} ({rate / old:.2f}×)")
        rows.append([c + (" FAIL" if i == 0 and entry["problems"] else "")
                     for i, c in enumerate(cells)])
    ratio = share(summary)
    verdict = ("no result" if ratio is None else
               f"{ratio:.1%} of the plain copy's rate, target ≥ {TARGET_SHARE:.0%}: "
               f"{'met' if ratio >= TARGET_SHARE else 'MISSED'}{_noise(summary, ratio)}")
    out = [f"{heading}Transfer PostgreSQL → MariaDB, batches of {BATCH:,}: median of "
           f"{reps} repetition(s)", "", render(rows, markdown), "",
           f"transfer() moves rows at {verdict}", ""]
    problems = [(m, p) for m, entry in summary.items() for p in entry["problems"]]
    if problems:
        out.append("Transfer: FAILED CHECKS")
        out.extend(f"- {METHODS[m]}: {p}" for m, p in problems)
        out.append("")
    return "\n".join(out)


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
