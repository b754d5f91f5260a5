"""The async section: 50 tasks at once on PostgreSQL, five implementations side by side.

    python -m bench.async_run                          # 3 repetitions, every implementation
    python -m bench.async_run -r 5 --markdown bench/ASYNC_RESULTS.md
    python -m bench.async_run --impl asyncpg,rhosocial_ar --workloads A1 --scale 0.2
    python -m bench.async_run --impl rhosocial_ar --profile prof/   # cProfile stats per workload

Raw asyncpg (the baseline), SQLAlchemy Core on an AsyncEngine, the ORM's
AsyncSession, Tortoise ORM and rhosocial_ar's awaitable forms each run the
four workloads of ``bench/async_workloads.py`` in a child process of their
own, on a database of their own (``rhosocial_ar_bench_async``, apart from
the sync benchmark's) reseeded for every child; repetitions are
interleaved, every implementation's pool has ``--pool`` connections. Issue
20's targets for rhosocial_ar (medians of the same run): at most 1.5x raw
asyncpg's time, and faster than the AsyncSession and Tortoise on every
workload. Exit status 1 when a result failed its check.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from . import async_workloads, machine, report
from .async_impls import BASELINE, IMPLEMENTATIONS, LABELS
from .servers import PostgresTarget

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_URL = os.environ.get("RHOSOCIAL_AR_BENCH_ASYNC_PG_URL",
                             "postgresql://root@127.0.0.1:5432/rhosocial_ar_bench_async")
TARGET_RATIO = 1.5
MUST_BEAT = ("orm", "tortoise")
MINE = "rhosocial_ar"


def _names(value: str, known: Any, what: str) -> list[str]:
    names = list(known) if value == "all" else [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown) or value!r}; "
                                         f"choose from {', '.join(known)}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.async_run", description=__doc__.split(
        "\n\n")[1].strip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", default="all", type=lambda v: _names(v, IMPLEMENTATIONS,
                        "implementation"), help=f"comma-separated: {', '.join(IMPLEMENTATIONS)}")
    parser.add_argument("--workloads", default="all", type=lambda v: _names(
        v.upper() if v != "all" else v, async_workloads.BY_KEY, "workload"),
        help="comma-separated: A1..A4 (default all)")
    parser.add_argument("-r", "--repetitions", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every workload's size (default 1)")
    parser.add_argument("--pool", type=int, default=20, help="connections per pool (default 20)")
    parser.add_argument("--pg-url", default=DEFAULT_URL,
                        help="PostgreSQL database, created if missing "
                             "(env RHOSOCIAL_AR_BENCH_ASYNC_PG_URL)")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown")
    parser.add_argument("--json", metavar="PATH", help="also write every measurement as JSON")
    parser.add_argument("--profile", metavar="DIR", help="one run under cProfile, stats in DIR")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per child process")
    args = parser.parse_args(argv)
    if args.repetitions < 1 or args.scale <= 0 or args.pool < 1:
        parser.error("--repetitions, --scale and --pool must be positive")
    if args.profile:
        args.repetitions = 1
        os.makedirs(args.profile, exist_ok=True)
    args.impl = sorted(dict.fromkeys(args.impl), key=list(IMPLEMENTATIONS).index)
    args.workloads = sorted(dict.fromkeys(args.workloads), key=list(async_workloads.BY_KEY).index)
    return args


def run_child(spec: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
    try:
        done = subprocess.run([sys.executable, "-m", "bench.async_child", json.dumps(spec)],
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, PYTHONHASHSEED="0"))
        stderr, status = done.stderr, done.returncode
        records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    except subprocess.TimeoutExpired:
        stderr, status, records = f"timed out after {timeout:.0f} s", None, []
    for key in sorted(set(spec["workloads"]) - {r["workload"] for r in records}):
        records.append({"impl": spec["impl"], "workload": key, "seconds": None,
                        "problems": [f"no result (exit status {status}): {stderr.strip()[-2000:]}"]})
    return records


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for rep in range(1, args.repetitions + 1):
        for impl in args.impl:
            spec = {"impl": impl, "url": args.pg_url, "workloads": args.workloads,
                    "scale": args.scale, "pool": args.pool}
            if args.profile:
                spec["profile"] = os.path.abspath(args.profile)
            start = time.perf_counter()
            found = run_child(spec, args.timeout)
            for record in found:
                record.update(db="postgresql", repetition=rep)
            records += found
            failed = sum(1 for r in found if r["problems"])
            print(f"[async] repetition {rep}/{args.repetitions} {impl:<13} "
                  f"{time.perf_counter() - start:6.1f} s{f', {failed} FAILED' if failed else ''}",
                  file=sys.stderr, flush=True)
    return records


def _median(records: list[dict[str, Any]], impl: str, key: str) -> float | None:
    times = [r["seconds"] for r in records if r["impl"] == impl and r["workload"] == key
             and r["seconds"] is not None and not r["problems"]]
    return statistics.median(times) * 1000 if times else None


def _verdict(records: list[dict[str, Any]], key: str) -> list[str]:
    """rhosocial_ar against issue 20's targets on one workload (empty without it or the baseline)."""
    mine, base = _median(records, MINE, key), _median(records, BASELINE, key)
    if mine is None or base is None:
        return ["", ""]
    ratio = mine / base
    cells = [f"≤ {TARGET_RATIO:g}×: {ratio:.2f}× {'met' if ratio <= TARGET_RATIO else 'MISSED'}"]
    rivals = {name: _median(records, name, key) for name in MUST_BEAT}
    beaten = [name for name, ms in rivals.items() if ms is not None and mine < ms]
    present = [name for name, ms in rivals.items() if ms is not None]
    cells.append(("met" if beaten == present else "MISSED: not faster than "
                  + ", ".join(sorted(set(present) - set(beaten)))) if present else "")
    return cells


def table(args: argparse.Namespace, records: list[dict[str, Any]], markdown: bool) -> str:
    """Median ms (ratio to raw asyncpg) per workload and implementation, and the verdicts."""
    header = ["workload", *(LABELS[i] for i in args.impl), "rhosocial_ar / asyncpg",
              "faster than AsyncSession, Tortoise"]
    rows = [header]
    for key in args.workloads:
        workload = async_workloads.BY_KEY[key]
        count = async_workloads.size(workload.base, args.scale)
        base = _median(records, BASELINE, key)
        cells = []
        for impl in args.impl:
            ms = _median(records, impl, key)
            failed = any(r["problems"] for r in records if r["impl"] == impl and r["workload"] == key)
            text = "—" if ms is None else f"{ms:,.1f}" + (f" ({ms / base:.2f}×)" if base else "")
            cells.append(text + (" FAIL" if failed else ""))
        rows.append([f"{key} {count:,} {workload.label}", *cells, *_verdict(records, key)])
    problems = sorted({f"{r['impl']} {r['workload']}: {p}" for r in records for p in r["problems"]})
    text = report.render_rows(rows, markdown)
    return text + ("\n\nFailed checks:\n" + "\n".join(problems) if problems else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m bench.async_run " + " ".join(sys.argv[1:] if argv is None else argv)
    target = PostgresTarget(args.pg_url)
    try:
        target.ensure_database()
        version = target.server_version()
    except Exception as exc:  # the run cannot start: say why, without a traceback
        raise SystemExit(f"bench.async_run: cannot reach PostgreSQL at {args.pg_url}: {exc}") from None
    finally:
        target.close()
    info = machine.describe({"postgresql": version})
    started = datetime.datetime.now().astimezone()
    records = measure(args)
    intro = [f"Command: {command.strip()}",
             f"{async_workloads.TASKS} concurrent tasks, pools of {args.pool}, scale "
             f"{args.scale:g}, {args.repetitions} repetition(s); median ms (× raw asyncpg).",
             *machine.lines(info),
             "Async: " + ", ".join(f"{name} {machine._version(name)}"
                                   for name in ("asyncpg", "greenlet", "tortoise-orm"))]
    print("\n" + "\n".join(intro) + "\n\n" + table(args, records, markdown=False))
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write(f"# Async benchmark ({started:%Y-%m-%d %H:%M %Z})\n\n"
                      + "\n\n".join(intro) + "\n\n" + table(args, records, markdown=True) + "\n")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"started": started.isoformat(), "command": command.strip(),
                       "machine": info, "records": records}, out, indent=1)
    if any(r["problems"] for r in records):
        print("\nbench.async_run: some results FAILED their checks (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
