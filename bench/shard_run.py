"""The sharding section: fan-out reads, key-routed lookups and rebalance on 4 PostgreSQL clusters.

    python -m bench.shard_run                       # 400,000 rows, 7 repetitions
    python -m bench.shard_run --rows 40000 -r 3 --move-rows 10000 --markdown shard.md
    python -m bench.shard_run --profile prof/       # cProfile of the fan-out calls, then stop

Starts five throwaway PostgreSQL clusters (s0..s3 hold the shards, s4 is
the shard a rebalance adds), seeds the orders with COPY (not timed), and
times, interleaved, for each repetition: the fan-out
``order_by('-created_at').limit(20)`` and ``count()`` over the 4 shards,
the same query on one shard (a quarter of the rows), the same per-shard
queries one after another (a loop of ``on_shard(s)``, merged in Python), and
``where(customer_id=k).all()`` lookups on the sharded model against the same
rows in one unsharded table. Then one rebalance from 4 shards to 5 against a
plain copy of the same rows. Issue 21's targets: fan-out ≤ 1.5× one shard
and ≤ 0.5× one after another; lookups ≤ 1.1× unsharded; rebalance ≥ 50% of
the plain copy's rate. The clusters are stopped by pid at the end, also on
Ctrl-C or an error. Exit status 1 when a result failed its check.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import os
import pstats
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from rhosocial_ar import ConnectionManager, fanout, get_connection, shard_of

from . import machine, report, shard_moves
from . import shard_workloads as w
from .shard_servers import clusters

Timed = dict[str, list[float]]           # operation -> ms per call, one per repetition


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.shard_run", description=__doc__.split(
        "\n\n")[1].strip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=400_000, help="orders over the 4 shards")
    parser.add_argument("-r", "--repetitions", type=int, default=7)
    parser.add_argument("--calls", type=int, default=100,
                        help="calls of each order/limit query per repetition (default 100)")
    parser.add_argument("--count-calls", type=int, default=20,
                        help="calls of each count() per repetition (default 20)")
    parser.add_argument("--lookups", type=int, default=1000, help="key-routed lookups per repetition")
    parser.add_argument("--move-rows", type=int, default=100_000,
                        help="rows on the 4 shards the rebalance starts from (0: no rebalance)")
    parser.add_argument("--note", default="", help="a line about the machine, printed with the table")
    parser.add_argument("--markdown", metavar="PATH", help="also write the section as Markdown")
    parser.add_argument("--profile", metavar="DIR", help="cProfile the fan-out calls into DIR")
    args = parser.parse_args(argv)
    if min(args.rows, args.repetitions, args.calls, args.count_calls, args.lookups) < 1:
        parser.error("--rows, --repetitions, --calls, --count-calls and --lookups must be positive")
    return args


def _time(operation: Callable[[], Any], calls: int) -> float:
    """ms per call over ``calls`` calls."""
    started = time.perf_counter()
    for _ in range(calls):
        operation()
    return (time.perf_counter() - started) * 1000 / calls


def operations(args: argparse.Namespace) -> dict[str, tuple[Callable[[], Any], int]]:
    """Each measured operation and how many calls make one sample."""
    customers = range(1, args.rows // w.PER_CUSTOMER + 1)
    keys = random.Random(7).choices(customers, k=args.lookups)
    # diagnostic: keys of one shard, so that both models talk to one server (no switching)
    on_s0 = [k for k in customers if shard_of(w.ShardOrder, k) == w.SHARDS[0]]
    s0_keys = random.Random(8).choices(on_s0, k=args.lookups)
    return {
        "fanout_top": (w.fanout_top, args.calls),
        "one_shard_top": (w.one_shard_top, args.calls),
        "sequential_top": (w.sequential_top, args.calls),
        "fanout_count": (w.fanout_count, args.count_calls),
        "one_shard_count": (w.one_shard_count, args.count_calls),
        "sequential_count": (w.sequential_count, args.count_calls),
        "sharded_lookups": (w.lookups(w.ShardOrder, keys), 1),
        "flat_lookups": (w.lookups(w.FlatOrder, keys), 1),
        "sharded_s0_lookups": (w.lookups(w.ShardOrder, s0_keys), 1),
        "flat_s0_lookups": (w.lookups(w.FlatOrder, s0_keys), 1),
    }


def check(args: argparse.Namespace, ops: dict[str, tuple[Callable[[], Any], int]]) -> list[str]:
    """Every variant answers what it should (also the warm-up)."""
    problems = []
    top = w.flat_top()
    for name in ("fanout_top", "sequential_top"):
        if ops[name][0]() != top:
            problems.append(f"{name} differs from the unsharded table's top {w.PAGE}")
    if w.fanout_count() != args.rows or w.sequential_count() != args.rows:
        problems.append(f"count() is not {args.rows}")
    if ops["sharded_lookups"][0]() != ops["flat_lookups"][0]():
        problems.append("the lookups read different numbers of rows")
    for operation, _ in ops.values():    # warm: pools connected, statements compiled
        operation()
    return problems


def measure(args: argparse.Namespace, ops: dict[str, tuple[Callable[[], Any], int]]) -> Timed:
    timed: Timed = {name: [] for name in ops}
    names = list(ops)
    for rep in range(args.repetitions):
        order = names[rep % len(names):] + names[:rep % len(names)]    # rotate: no fixed position
        for name in order:
            operation, calls = ops[name]
            timed[name].append(_time(operation, calls))
        print(f"[shards] repetition {rep + 1}/{args.repetitions}: "
              + ", ".join(f"{n} {timed[n][-1]:.2f}" for n in names), file=sys.stderr, flush=True)
    return timed


def profile(args: argparse.Namespace, ops: dict[str, tuple[Callable[[], Any], int]]) -> None:
    os.makedirs(args.profile, exist_ok=True)
    for name in ("fanout_top", "one_shard_top", "fanout_count"):
        operation, calls = ops[name]
        profiler = cProfile.Profile()
        profiler.runcall(_time, operation, calls)
        path = os.path.join(args.profile, f"{name}.prof")
        profiler.dump_stats(path)
        print(f"--- {name}: {path}")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def _verdict(times: list[float], base: list[float], limit: float) -> tuple[str, str]:
    """(ratio of medians, 'met'/'MISSED' with the 95% interval)."""
    ratio = statistics.median(times) / statistics.median(base)
    met = ratio <= limit
    text = "met" if met else "MISSED"
    if min(len(times), len(base)) >= report.MIN_RUNS_FOR_INTERVAL:
        low, high = report.ratio_interval(times, base)
        sure = high <= limit if met else low > limit
        text += f" ({low:.2f}–{high:.2f}{'' if sure else ', within noise'})"
    return f"{ratio:.2f}×", text


def rows_table(args: argparse.Namespace, timed: Timed, moves: dict[str, Any] | None) -> list[list[str]]:
    med = {name: statistics.median(times) for name, times in timed.items()}
    quarter = f"{args.rows // 4:,}"
    top = f"fan-out `order_by('-created_at').limit({w.PAGE})`, {args.rows:,} rows on 4 shards"
    count = f"fan-out `count()`, {args.rows:,} rows on 4 shards"
    look = f"{args.lookups:,} key-routed `where(customer_id=k).all()`"
    out = [["measurement", "ms (median)", "against", "ms (median)", "ratio", "target", "verdict"]]
    for label, mine, base, against, limit in (
        (top, "fanout_top", "one_shard_top", f"the same on one shard ({quarter} rows)", 1.5),
        (top, "fanout_top", "sequential_top", "the 4 shards one after another", 0.5),
        (count, "fanout_count", "one_shard_count", f"the same on one shard ({quarter} rows)", 1.5),
        (count, "fanout_count", "sequential_count", "the 4 shards one after another", 0.5),
        (look, "sharded_lookups", "flat_lookups", f"unsharded model, same {args.rows:,} rows", 1.1),
        (look + " (diagnostic: keys all on s0)", "sharded_s0_lookups", "flat_s0_lookups",
         "unsharded model, same keys", 1.1),
    ):
        ratio, verdict = _verdict(timed[mine], timed[base], limit)
        out.append([label, f"{med[mine]:.2f}", against, f"{med[base]:.2f}", ratio,
                    f"≤ {limit:g}×", verdict])
    if moves is None:
        out.append(["rebalance 4 → 5 shards", "—", "plain copy", "—", "—", "≥ 50%",
                    "not measured (--move-rows 0)"])
    else:
        share = moves["rebalance_rate"] / moves["plain_rate"]
        out.append([f"rebalance 4 → 5 shards, {moves['rebalance_rows']:,} of {args.move_rows:,} "
                    f"rows moved: {moves['rebalance_rate']:,.0f} rows/s ({moves['rebalance_s']:.2f} s)",
                    "—", f"plain copy (raw psycopg2, not atomic), {moves['plain_rows']:,} rows: "
                    f"{moves['plain_rate']:,.0f} rows/s ({moves['plain_s']:.2f} s)", "—",
                    f"{share:.0%}", "≥ 50%", ("met" if share >= 0.5 else "MISSED")
                    + " (one run each)"])
    return out


def run_moves(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """The plain copy, then rebalance(), on the same rows; their rates and any problem."""
    shard_moves.seed(args.move_rows)
    plain_s, plain_rows = shard_moves.plain_move()
    result = shard_moves.ar_rebalance()
    problems = []
    plain_counts, ar_counts = shard_moves.counts("plain_orders"), shard_moves.counts("move_orders")
    if plain_counts != ar_counts or sum(ar_counts.values()) != args.move_rows:
        problems.append(f"after the moves plain {plain_counts} != rebalance {ar_counts}")
    if not result.matches or result.rows_moved != plain_rows:
        problems.append(f"rebalance moved {result.rows_moved} rows (plain {plain_rows}), "
                        f"matches={result.matches}")
    print(f"[shards] plain copy {plain_rows} rows in {plain_s:.2f} s; rebalance "
          f"{result.rows_moved} rows in {result.seconds:.2f} s, {result.batches} batches",
          file=sys.stderr, flush=True)
    return {"plain_s": plain_s, "plain_rows": plain_rows, "plain_rate": plain_rows / plain_s,
            "rebalance_s": result.seconds, "rebalance_rows": result.rows_moved,
            "rebalance_rate": result.rows_moved / result.seconds}, problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m bench.shard_run " + shlex.join(sys.argv[1:] if argv is None else argv)
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    moves: dict[str, Any] | None = None
    try:
        with clusters(5) as urls:
            w.configure(urls)
            with get_connection("s0").engine.connect() as conn:
                version = str(conn.exec_driver_sql("SHOW server_version").scalar()).split()[0]
            per_shard = w.seed(args.rows)
            print(f"[shards] seeded {per_shard}", file=sys.stderr, flush=True)
            ops = operations(args)
            problems = check(args, ops)
            if args.profile:
                profile(args, ops)
                return 0
            timed = measure(args, ops)
            if args.move_rows:
                moves, more = run_moves(args)
                problems += more
    finally:
        ConnectionManager.reset()
    load_after = os.getloadavg()
    info = machine.describe({"postgresql": f"PostgreSQL {version}"})
    intro = [f"Command: {command.strip()} ({started:%Y-%m-%d %H:%M} UTC)",
             f"5 PostgreSQL clusters started by the run (fsync off), 4 shards + 1 for the rebalance; "
             f"rows per shard {per_shard}; fan-out on fanout.WORKERS={fanout.WORKERS} threads; "
             f"{args.repetitions} repetitions, interleaved; median ms per call "
             f"({args.calls} calls per sample, {args.count_calls} for count()), "
             f"95% bootstrap interval of each ratio in brackets.",
             *machine.lines(info),
             f"Load average (1/5/15 min) before {'/'.join(f'{x:.2f}' for x in load_before)}, after "
             f"{'/'.join(f'{x:.2f}' for x in load_after)}" + (f"; {args.note}" if args.note else "")]
    rows = rows_table(args, timed, moves)
    print("\n" + "\n".join(intro) + "\n\n" + report.render_rows(rows, markdown=False))
    if problems:
        print("\nFailed checks:\n" + "\n".join(problems))
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write("\n\n".join(intro) + "\n\n" + report.render_rows(rows, markdown=True) + "\n"
                      + ("\nFailed checks:\n\n" + "\n".join(f"- {p}" for p in problems) + "\n"
                         if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
