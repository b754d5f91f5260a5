"""The async section's four workloads: many tasks at once, one operation at a time each.

    plan = prepare('A1', scale=1.0)          # the operations, and how to check their results
    await run(plan, impl, tasks=50)          # seconds of wall time for all of them

Each workload is a list of operations shared round-robin among ``TASKS``
tasks that each await theirs one after another, as request handlers would;
the time is the wall time from the first to the last. The tables are seeded
once per process with ``SEED_USERS`` users and ten posts for each of the
first ``EAGER_USERS`` (A4 inserts, so it runs last).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import schema
from .workloads import size

TASKS = 50
SEED_USERS = 10_000
EAGER_USERS, POSTS_PER_USER, EAGER_PAGE = 1000, 10, 10
PAGE = 20


@dataclass(frozen=True)
class Workload:
    key: str
    method: str
    label: str
    base: int          # operations at scale 1


WORKLOADS = [
    Workload("A1", "find", "primary-key lookups", 5000),
    Workload("A2", "query", "WHERE age > ? ORDER BY id LIMIT 20", 2000),
    Workload("A3", "eager", "10 users with their 10 posts each, eager-loaded", 500),
    Workload("A4", "insert", "single INSERTs, each committed at once", 2000),
]
BY_KEY = {w.key: w for w in WORKLOADS}


@dataclass
class Plan:
    workload: Workload
    operations: list[tuple[Any, ...]]
    check: Callable[[list[Any]], list[str]]


def seeded(scale: float) -> int:
    return max(size(SEED_USERS, scale), EAGER_USERS)


def prepare(key: str, scale: float) -> Plan:
    """The operations of workload ``key`` and the check of their results, in order."""
    workload = BY_KEY[key]
    count, users = size(workload.base, scale), seeded(scale)
    if key == "A1":
        ids = [(i * 7919) % users + 1 for i in range(count)]
        return Plan(workload, [(i,) for i in ids],
                    lambda got: _mismatches(got, [(i, f"user{i}") for i in ids]))
    if key == "A2":
        ages = sorted({schema.user_age(i) for i in range(1, users + 1)})
        thresholds = [ages[i % (len(ages) - 1)] for i in range(count)]
        by_age = [(i, schema.user_age(i)) for i in range(1, users + 1)]
        first = {t: [i for i, age in by_age if age > t][:PAGE] for t in set(thresholds)}
        return Plan(workload, [(t,) for t in thresholds],
                    lambda got: _mismatches(got, [first[t] for t in thresholds]))
    if key == "A3":
        lows = [(k * EAGER_PAGE) % EAGER_USERS + 1 for k in range(count)]
        expected = (EAGER_PAGE, EAGER_PAGE * POSTS_PER_USER)
        return Plan(workload, [(low, low + EAGER_PAGE - 1) for low in lows],
                    lambda got: _mismatches(got, [expected] * count))
    rows = schema.user_rows(count, prefix="new")
    return Plan(workload, [(row,) for row in rows], lambda got: _new_ids(got, users, count))


def _mismatches(got: list[Any], expected: list[Any]) -> list[str]:
    wrong = [i for i, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e]
    if not wrong:
        return []
    i = wrong[0]
    return [f"{len(wrong)} of {len(got)} results wrong; first: #{i} gave {got[i]!r}, "
            f"expected {expected[i]!r}"]


def _new_ids(got: list[Any], users: int, count: int) -> list[str]:
    if len(set(got)) != count or min(got) <= users:
        return [f"the {count} inserts returned {len(set(got))} distinct new ids"]
    return []


async def run(plan: Plan, impl: Any, tasks: int = TASKS) -> tuple[float, list[Any]]:
    """Run the plan's operations on ``tasks`` tasks; (wall seconds, results in plan order)."""
    method = getattr(impl, plan.workload.method)
    results: list[Any] = [None] * len(plan.operations)

    async def worker(first: int) -> None:
        for i in range(first, len(plan.operations), tasks):
            results[i] = await method(*plan.operations[i])

    start = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in range(tasks)))
    return time.perf_counter() - start, results


async def warm_up(impl: Any, scale: float, tasks: int = TASKS) -> None:
    """Fill the pool and the statement caches: a few rounds of each read, untimed."""
    for key in ("A1", "A2", "A3"):
        plan = prepare(key, scale)
        plan.operations = plan.operations[:2 * tasks]
        await run(plan, impl, tasks)
