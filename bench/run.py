"""Run the benchmark: every implementation in its own process, repetitions interleaved.

    python -m bench                                   # SQLite, 5 repetitions, everything
    python -m bench --db sqlite,postgresql,mysql --markdown bench/RESULTS.md
    python -m bench --impl raw,rhosocial_ar --workloads W1,W4 -r 3
    python -m bench --scale 0.01 -r 1                 # a quick check that everything runs
    python -m bench --impl rhosocial_ar --workloads W1 --profile prof/   # pyinstrument
    python -m bench --json after.json --compare before.json   # medians old -> new
    python -m bench --transfer only -r 5              # PostgreSQL -> MariaDB transfer() alone

Process model: by default one child process per implementation and
repetition runs the selected workloads in order, each on a fresh database,
so no implementation shares an interpreter (imports, caches, sqlite3's
global adapters, garbage) with another, and the 0.2-0.7 s import of each
child is paid 25 times per database rather than 350 times: that is what
keeps a default run within a few minutes. ``--process-per workload``
gives every workload its own process instead (slower, for checking that the
order of workloads does not matter). Repetitions are interleaved: every
implementation runs repetition 1, then every implementation repetition 2,
and so on, so a disturbance of the machine spreads over all of them.

The exit status is 1 when any check failed (a row count, a statement count,
N+1 in W7, a wrong value), after printing the tables with the failures.

When both servers are selected (``--db postgresql,mysql``), the workloads
are followed by the transfer benchmark (``bench/transfer.py``): rows moved
from PostgreSQL to MariaDB by a plain batched copy and by two-phase
``transfer()``, judged against issue 6's target of half the copy's rate.
``--transfer only`` runs it alone, ``--transfer off`` never.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from typing import Any

from . import machine, report, transfer, workloads
from .impls import BASELINE, IMPLEMENTATIONS
from .targets import DEFAULT_URLS, LABELS, make_target

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATABASES = ("sqlite", "postgresql", "mysql")


def _names(value: str, known: Any, what: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if value.strip().lower() == "all":
        return list(known)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown) or value!r}; choose from {', '.join(known)}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Fourteen workloads on the raw driver, SQLAlchemy Core and ORM, peewee "
                    "and rhosocial_ar; prints medians and ratios to the raw driver. With both "
                    "servers, also a PostgreSQL -> MariaDB transfer: a plain batched copy "
                    "against two-phase transfer().")
    parser.add_argument("--db", default=None,
                        type=lambda v: _names(v, DATABASES, "database"),
                        help="comma-separated: sqlite, postgresql, mysql, or all (default sqlite; "
                             "postgresql,mysql with --transfer only)")
    parser.add_argument("--impl", default="all",
                        type=lambda v: _names(v, IMPLEMENTATIONS, "implementation"),
                        help=f"comma-separated: {', '.join(IMPLEMENTATIONS)} (default all)")
    parser.add_argument("--workloads", default="all",
                        type=lambda v: _names(v.upper() if v != "all" else v, workloads.BY_KEY,
                                              "workload"),
                        help=f"comma-separated: W1..{workloads.WORKLOADS[-1].key} (default all)")
    parser.add_argument("-r", "--repetitions", type=int, default=5,
                        help="runs of each implementation (default 5)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every workload's size (default 1; 0.01 for a smoke test)")
    parser.add_argument("--transfer", choices=("auto", "only", "off"), default="auto",
                        help="the transfer benchmark (PostgreSQL -> MariaDB, batches of "
                             f"{transfer.BATCH:,}, plain copy vs two-phase transfer()): auto runs "
                             "it after the workloads when --db has postgresql and mysql (default); "
                             "only runs just it; off skips it")
    parser.add_argument("--transfer-rows", type=int, metavar="N",
                        help=f"rows each transfer run moves (default {transfer.ROWS:,} x --scale)")
    parser.add_argument("--process-per", choices=("implementation", "workload"),
                        default="implementation",
                        help="one process per implementation and repetition (default), or per "
                             "workload too")
    parser.add_argument("--markdown", metavar="PATH", help="also write the tables as Markdown")
    parser.add_argument("--json", metavar="PATH", help="also write every measurement as JSON")
    parser.add_argument("--compare", metavar="JSON",
                        help="also show each median against an earlier run's --json file")
    parser.add_argument("--profile", metavar="DIR",
                        help="run once under pyinstrument, reports in DIR (timings are inflated)")
    parser.add_argument("--pg-url", default=DEFAULT_URLS["postgresql"],
                        help="PostgreSQL database (created if missing; env RHOSOCIAL_AR_BENCH_PG_URL)")
    parser.add_argument("--mysql-url", default=DEFAULT_URLS["mysql"],
                        help="MariaDB/MySQL database (created if missing; "
                             "env RHOSOCIAL_AR_BENCH_MYSQL_URL)")
    parser.add_argument("--exclusive", action="store_true",
                        help="hold the test suite's machine-wide lock (tests/conftest.py) while "
                             "measuring, so no test run on this machine overlaps (or restarts a "
                             "server during) the benchmark")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per child process")
    args = parser.parse_args(argv)
    if args.repetitions < 1 or args.scale <= 0:
        parser.error("--repetitions and --scale must be positive")
    if args.db is None:
        args.db = ["postgresql", "mysql"] if args.transfer == "only" else ["sqlite"]
    if args.transfer == "only" and not {"postgresql", "mysql"} <= set(args.db):
        parser.error("--transfer only needs postgresql and mysql in --db")
    if args.transfer_rows is None:
        args.transfer_rows = workloads.size(transfer.ROWS, args.scale)
    elif args.transfer_rows < 1:
        parser.error("--transfer-rows must be positive")
    if args.profile:
        args.repetitions = 1
    # the raw driver is the baseline of every ratio; keep it first
    args.impl = sorted(dict.fromkeys(args.impl), key=list(IMPLEMENTATIONS).index)
    args.workloads = sorted(dict.fromkeys(args.workloads), key=list(workloads.BY_KEY).index)
    return args


def runs_transfer(args: argparse.Namespace) -> bool:
    return args.transfer == "only" or (
        args.transfer == "auto" and {"postgresql", "mysql"} <= set(args.db))


def target_specs(args: argparse.Namespace) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each database's target description and server version; servers' databases created."""
    specs: dict[str, dict[str, Any]] = {}
    versions: dict[str, str] = {}
    for db in args.db:
        spec: dict[str, Any] = {"dialect": db}
        if db == "postgresql":
            spec["url"] = args.pg_url
        elif db == "mysql":
            spec["url"] = args.mysql_url
        target = make_target(spec if db != "sqlite" else {**spec, "dir": ""})
        try:
            if db != "sqlite":
                target.ensure_database()  # type: ignore[attr-defined]
            versions[db] = target.server_version()
        except Exception as exc:
            raise SystemExit(f"bench: cannot reach {LABELS[db]} at {spec.get('url')}: {exc}") from None
        finally:
            target.close()
        specs[db] = spec
    return specs, versions


def run_child(spec: dict[str, Any], timeout: float) -> tuple[list[dict[str, Any]], str]:
    env = dict(os.environ, PYTHONHASHSEED="0")
    try:
        done = subprocess.run([sys.executable, "-m", "bench.child", json.dumps(spec)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [], f"timed out after {timeout:.0f} s"
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    missing = set(spec["workloads"]) - {r["workload"] for r in records}
    error = ""
    if missing or (done.returncode != 0 and not records):
        error = f"exit status {done.returncode}; stderr:\n{done.stderr.strip()[-3000:]}"
    for key in sorted(missing):
        records.append({"impl": spec["impl"], "workload": key, "seconds": None, "statements": None,
                        "transaction_control": None, "problems": [f"no result: {error}"]})
    return records, error


def measure(args: argparse.Namespace, specs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    groups = ([args.workloads] if args.process_per == "implementation"
              else [[key] for key in args.workloads])
    for db, target in specs.items():
        for rep in range(1, args.repetitions + 1):
            for impl in args.impl:
                for group in groups:
                    spec = {"impl": impl, "target": target, "workloads": group, "scale": args.scale}
                    if args.profile:
                        spec["profile"] = os.path.abspath(args.profile)
                    start = time.perf_counter()
                    found, error = run_child(spec, args.timeout)
                    for record in found:
                        record.update(db=db, repetition=rep)
                    records.extend(found)
                    failed = sum(1 for r in found if r["problems"])
                    status = f", {failed} FAILED" if failed else ""
                    print(f"[{db}] repetition {rep}/{args.repetitions} {impl:<13} "
                          f"{','.join(group):<20} {time.perf_counter() - start:6.1f} s{status}",
                          file=sys.stderr, flush=True)
                    if error:
                        print(f"  {impl}: {error}", file=sys.stderr)
    return records


def render(args: argparse.Namespace, info: dict[str, Any], records: list[dict[str, Any]],
           markdown: bool, command: str) -> str:
    summary = report.summarize(records)
    header = machine.lines(info)
    intro = [f"Command: `{command}`" if markdown else f"Command: {command}"]
    if args.transfer != "only":
        intro.append(f"Scale {args.scale:g}, {args.repetitions} repetition(s) per implementation, "
                     f"one process per {args.process_per}; baseline: {BASELINE} (the DB-API "
                     f"driver).")
    intro += header
    if args.profile:
        intro.append("Under pyinstrument: the timings are inflated by the profiler.")
    earlier = None
    if args.compare:
        with open(args.compare) as earlier_file:
            earlier = json.load(earlier_file)
        intro.append(f"Compared with {args.compare} ({earlier['started']}, rhosocial_ar at "
                     f"commit {earlier['machine']['commit']}).")
    body = ""
    if args.transfer != "only":
        body = report.tables(summary, args.db, args.impl, args.workloads, args.scale,
                             args.repetitions, markdown=markdown, server_versions=info["servers"])
        if earlier is not None:
            body += "\n" + report.comparison(
                summary, report.summarize(earlier["records"]), args.db, args.impl,
                args.workloads, args.scale, markdown=markdown)
    if runs_transfer(args):
        body += "\n" + transfer.table(records, report.render_rows, markdown=markdown,
                                      earlier=earlier["records"] if earlier else None)
    sep = "\n\n" if markdown else "\n"
    return sep.join(intro) + "\n\n" + body.lstrip("\n")


def hold_test_lock() -> Any:
    """Wait for and take the lock that test sessions take (released when the process ends)."""
    import fcntl
    import tempfile

    handle = open(os.path.join(tempfile.gettempdir(), "rhosocial_ar_tests.lock"), "w")  # noqa: SIM115
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("bench: waiting for the test suite's lock (a test run is in progress)",
              file=sys.stderr, flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    lock = hold_test_lock() if args.exclusive else None  # noqa: F841 (held until exit)
    specs, versions = target_specs(args)
    info = machine.describe(versions)
    started = datetime.datetime.now().astimezone()
    records = measure(args, specs) if args.transfer != "only" else []
    if runs_transfer(args):
        records += transfer.measure(
            specs["postgresql"]["url"], specs["mysql"]["url"], args.transfer_rows,
            args.repetitions, args.timeout, os.path.abspath(args.profile) if args.profile else None)
    print()
    print(render(args, info, records, False, command.strip()))
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write(f"# Benchmark results ({started:%Y-%m-%d %H:%M %Z})\n\n")
            out.write(render(args, info, records, True, command.strip()) + "\n")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"started": started.isoformat(), "command": command.strip(),
                       "scale": args.scale, "repetitions": args.repetitions, "machine": info,
                       "records": records}, out, indent=1)
    if args.profile:
        print(f"pyinstrument reports in {os.path.abspath(args.profile)}")
    failed = [r for r in records if r["problems"]]
    if failed:
        print(f"\nbench: {len(failed)} run(s) FAILED their checks (see above)", file=sys.stderr)
        return 1
    return 0
