"""Medians, minimums and ratios to the raw driver, as text or Markdown tables.

    summary = summarize(records)                 # records: the children's JSON lines
    print(tables(summary, dbs, impls, keys, scale, reps, markdown=False))

A cell of the main table is ``median ms (median / raw median)``; a cell
whose runs failed a check is marked ``FAIL`` and its problems are listed
under the table. Three more columns judge rhosocial_ar against issues 6's
and 17's targets: its ratio (``workloads.TARGET_RATIOS``), whether its
median beats the ORM's and peewee's, and whether it is no slower than
SQLAlchemy Core's (or the workload is exempt, ``workloads.CORE_EXEMPT``:
Core returns bare rows there). The ratio comes with a 95% bootstrap
interval: on a noisy machine a verdict whose interval straddles the limit
says so ("within noise") instead of passing for a result.
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from typing import Any

from . import workloads
from .impls import BASELINE
from .targets import LABELS


def summarize(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(db, impl, workload) -> median and min in ms, statement counts, problems."""
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        grouped[(record["db"], record["impl"], record["workload"])].append(record)
    summary = {}
    for key, runs in grouped.items():
        times = [r["seconds"] * 1000 for r in runs if r["seconds"] is not None]
        problems = sorted({p for r in runs for p in r["problems"]})
        summary[key] = {
            "median": statistics.median(times) if times else None,
            "min": min(times) if times else None,
            "runs": len(times),
            "times": times,
            "statements": sorted({r["statements"] for r in runs if r["statements"] is not None}),
            "problems": problems,
        }
    return summary


MIN_RUNS_FOR_INTERVAL = 3   # below this a resample has too few distinct medians to mean much


def ratio_interval(times: list[float], base_times: list[float], draws: int = 2000,
                   seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of ``median(times) / median(base_times)``.

    Each draw resamples both sets of runs with replacement; the seed is
    fixed, so the same runs always give the same interval.
    """
    rng = random.Random(seed)
    median, choices = statistics.median, rng.choices
    ratios = sorted(median(choices(times, k=len(times)))
                    / median(choices(base_times, k=len(base_times))) for _ in range(draws))
    return ratios[int(draws * 0.025)], ratios[int(draws * 0.975) - 1]


def _verdict(entry: dict[str, Any], base: dict[str, Any], limit: float) -> str:
    ratio = entry["median"] / base["median"]
    met = ratio <= limit
    verdict = f"≤ {limit:g}×: {ratio:.2f}× {'met' if met else 'MISSED'}"
    if min(len(entry["times"]), len(base["times"])) < MIN_RUNS_FOR_INTERVAL:
        return verdict + " (too few runs to judge the noise)"
    low, high = ratio_interval(entry["times"], base["times"])
    sure = high <= limit if met else low > limit
    return verdict + f" ({low:.2f}–{high:.2f}{'' if sure else ', within noise'})"


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.2f}"
    if value < 1000:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return ""
    ratio = value / base
    return f"{ratio:.1f}×" if ratio < 100 else f"{ratio:.0f}×"


def render_rows(rows: list[list[str]], markdown: bool) -> str:
    """A table whose first row is the header: Markdown, or text in aligned columns."""
    if markdown:
        head, *body = rows
        lines = ["| " + " | ".join(head) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                  for i, cell in enumerate(row)).rstrip()
        for row in rows
    )


def _cell(entry: dict[str, Any] | None, field: str, base: dict[str, Any] | None,
          ratio: bool) -> str:
    if entry is None:
        return "—"
    text = _ms(entry[field])
    if ratio and base is not None:
        text += f" ({_ratio(entry[field], base[field])})" if entry[field] is not None else ""
    return text + (" FAIL" if entry["problems"] else "")


TARGET_COLUMNS = ["target ratio", "faster than orm, peewee", "no slower than core"]


def _targets(summary: dict[tuple[str, str, str], dict[str, Any]], db: str, key: str,
             impls: list[str]) -> list[str]:
    """The targets for rhosocial_ar on one workload: the ratio, the peers to beat, Core."""
    mine = summary.get((db, "rhosocial_ar", key))
    base = summary.get((db, BASELINE, key))
    limit = workloads.TARGET_RATIOS.get(db, {}).get(key)
    if mine is None or mine["median"] is None:
        return ["—"] * len(TARGET_COLUMNS)
    ratio = "—"
    if limit is not None and base is not None and base["median"]:
        ratio = _verdict(mine, base, limit)
    slower = [peer for peer in workloads.MUST_BEAT if peer in impls
              and (summary.get((db, peer, key)) or {}).get("median") is not None
              and summary[(db, peer, key)]["median"] <= mine["median"]]
    present = [peer for peer in workloads.MUST_BEAT if (db, peer, key) in summary]
    beats = "—" if not present else ("yes" if not slower else "NO: " + ", ".join(slower))
    return [ratio, beats, _versus_core(summary.get((db, workloads.NO_SLOWER_THAN, key)), mine,
                                       key)]


def _versus_core(core: dict[str, Any] | None, mine: dict[str, Any], key: str) -> str:
    if key in workloads.CORE_EXEMPT:
        return "exempt: " + workloads.CORE_EXEMPT[key]
    if core is None or core["median"] is None:
        return "—"
    if mine["median"] <= core["median"]:
        return "yes"
    return f"NO: {mine['median'] / core['median']:.2f}× core"


def _missed(title: str, verdicts: dict[str, list[str]], failed: set[str]) -> str:
    """One line: the targets rhosocial_ar missed on this database, by workload and column."""
    missed = []
    for key, cells in verdicts.items():
        names = [name for name, cell in zip(TARGET_COLUMNS, cells, strict=True)
                 if "MISSED" in cell or cell.startswith("NO")]
        if key in failed:
            names.insert(0, "failed its checks")
        if names:
            missed.append(f"{key} ({'; '.join(names)})")
    if not missed:
        return f"{title}: rhosocial_ar met every target it was judged on."
    return f"{title}: rhosocial_ar MISSED {len(missed)} workload(s)' targets: " + ", ".join(missed)


def tables(summary: dict[tuple[str, str, str], dict[str, Any]], dbs: list[str], impls: list[str],
           keys: list[str], scale: float, repetitions: int, markdown: bool = False,
           server_versions: dict[str, str] | None = None) -> str:
    """The median table (with ratios), the minimum table and statement counts, per database."""
    out: list[str] = []
    heading = "### " if markdown else ""
    for db in dbs:
        title = (server_versions or {}).get(db) or LABELS[db]
        for kind, field, ratio in (
            ("median ms (ratio to the raw driver's median)", "median", True),
            ("min ms", "min", False),
        ):
            judge = ratio and "rhosocial_ar" in impls
            extra = TARGET_COLUMNS if judge else []
            rows = [["workload", *impls, *extra]]
            verdicts = {}
            for key in keys:
                base = summary.get((db, BASELINE, key))
                verdicts[key] = _targets(summary, db, key, impls) if judge else []
                rows.append([workloads.label(workloads.BY_KEY[key], scale)] + [
                    _cell(summary.get((db, impl, key)), field, base, ratio) for impl in impls]
                    + verdicts[key])
            out.append(f"{heading}{title}: {kind}, {repetitions} repetition(s)")
            out.append("")
            out.append(render_rows(rows, markdown))
            out.append("")
            if judge:
                failed = {key for key in keys
                          if (summary.get((db, "rhosocial_ar", key)) or {}).get("problems")}
                out += [_missed(title, verdicts, failed), ""]
        rows = [["workload", *impls]]
        for key in keys:
            row = [workloads.label(workloads.BY_KEY[key], scale)]
            for impl in impls:
                entry = summary.get((db, impl, key))
                row.append("—" if entry is None else "/".join(f"{n:,}" for n in entry["statements"]))
            rows.append(row)
        out.append(f"{heading}{title}: statements sent per run (transaction control not counted)")
        out.append("")
        out.append(render_rows(rows, markdown))
        out.append("")
        problems = [(impl, key, p) for impl in impls for key in keys
                    for p in (summary.get((db, impl, key)) or {}).get("problems", [])]
        if problems:
            out.append(f"{title}: FAILED CHECKS")
            out.extend(f"- {impl} {key}: {p}" for impl, key, p in problems)
            out.append("")
    return "\n".join(out)


def comparison(summary: dict[tuple[str, str, str], dict[str, Any]],
               earlier: dict[tuple[str, str, str], dict[str, Any]], dbs: list[str],
               impls: list[str], keys: list[str], scale: float, markdown: bool = False) -> str:
    """This run's medians against an earlier run's (``--compare``): new / old, below 1 is faster."""
    out: list[str] = []
    heading = "### " if markdown else ""
    for db in dbs:
        rows = [["workload", *impls]]
        for key in keys:
            row = [workloads.label(workloads.BY_KEY[key], scale)]
            for impl in impls:
                new, old = summary.get((db, impl, key)), earlier.get((db, impl, key))
                if not new or not old or new["median"] is None or not old["median"]:
                    row.append("—")
                else:
                    row.append(f"{_ms(old['median'])} → {_ms(new['median'])} "
                               f"({new['median'] / old['median']:.2f}×)")
            rows.append(row)
        out += [f"{heading}{LABELS[db]}: median ms, earlier run → this run (new / old)", "",
                render_rows(rows, markdown), ""]
    return "\n".join(out)
