"""The seven workloads: their sizes, their data, and what each must leave behind.

    plan = prepare('W4', target, scale=1.0)   # fresh tables, seeded; nothing counted
    result = impl.w4_find(*plan.args)         # the timed part, in one transaction
    plan.check(result, impl, target)          # [] or a list of problems

Each workload starts from a fresh database (SQLite: a new file; servers: the
tables dropped and created again), seeded with the raw driver outside the
timing. ``plan.statements`` is the range of statements the implementation
may send (transaction control not included); outside it the run fails, and
for W7 a count that grows with the number of users fails as N+1.
"""

from __future__ import annotations

import datetime
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import schema
from .targets import Target

POSTS_PER_USER = 10
PAGE = 20           # W5's LIMIT


@dataclass(frozen=True)
class Workload:
    key: str
    method: str
    title: str       # with the full-scale sizes
    base: int        # the number of operations (W2, W3: rows; W7: users) at scale 1


WORKLOADS = [
    Workload("W1", "w1_create", "create and save users one at a time", 5000),
    Workload("W2", "w2_bulk_insert", "bulk insert users", 20000),
    Workload("W3", "w3_load_all", "load users as objects", 20000),
    Workload("W4", "w4_find", "lookups by primary key", 5000),
    Workload("W5", "w5_query", "WHERE age > ? ORDER BY id LIMIT 20, built each time", 2000),
    Workload("W6", "w6_update", "load users, change a field, save each", 2000),
    Workload("W7", "w7_eager", "users with 10 posts each, eager-loaded", 1000),
]
BY_KEY = {w.key: w for w in WORKLOADS}

# issue 6's targets for rhosocial_ar: the highest median ratio to the raw driver
TARGET_RATIOS = {
    "sqlite": {"W1": 4.0, "W2": 1.5, "W3": 3.0, "W4": 4.0, "W5": 4.0, "W6": 4.0, "W7": 3.0},
    "postgresql": {"W1": 1.3, "W4": 1.3, "W5": 1.3, "W6": 1.3},
}
# ... and it must be faster than these on every workload and database
MUST_BEAT = ("orm", "peewee")
W345_USERS = 20000   # the table W3, W4 and W5 read


def size(base: int, scale: float) -> int:
    return max(1, round(base * scale))


def label(workload: Workload, scale: float) -> str:
    """``'W4 5,000 lookups by primary key'`` at the scale of the run."""
    n = size(workload.base, scale)
    return f"{workload.key} {n:,} {workload.title}"


@dataclass
class Plan:
    """What one workload runs with and how its outcome is checked."""

    workload: Workload
    scale: float
    args: tuple[Any, ...]
    statements: tuple[int, int]
    checks: list[Callable[[Any, Any, Target], list[str]]] = field(default_factory=list)

    def check(self, result: Any, impl: Any, target: Target) -> list[str]:
        problems: list[str] = []
        for check in self.checks:
            problems.extend(check(result, impl, target))
        return problems


def _expect(what: str, got: Any, want: Any) -> list[str]:
    return [] if got == want else [f"{what}: got {got!r}, expected {want!r}"]


def _table_count(target: Target, want: int, where: str = "") -> list[str]:
    got = target.scalar(f"SELECT COUNT(*) FROM users {where}")
    return _expect(f"rows in users {where}".rstrip(), got, want)


def _same_datetime(got: Any, want: datetime.datetime) -> list[str]:
    if not isinstance(got, datetime.datetime):
        return [f"created_at is a {type(got).__name__}, not a datetime"]
    return _expect("created_at", got, want)


def _seed_users(target: Target, count: int) -> list[dict[str, Any]]:
    rows = schema.user_rows(count)
    target.seed_users(rows)
    return rows


def prepare(key: str, target: Target, scale: float) -> Plan:
    """Fresh tables for workload ``key``, seeded; returns its plan."""
    workload = BY_KEY[key]
    n = size(workload.base, scale)
    target.fresh(key.lower())
    plan = _PLANS[key](workload, target, scale, n)
    target.analyze()
    target.close()
    return plan


def _plan_w1(workload: Workload, target: Target, scale: float, n: int) -> Plan:
    rows = schema.user_rows(n, prefix="new")

    def check(result: Any, impl: Any, target: Target) -> list[str]:
        return (_expect("ids returned", sorted(result), list(range(1, n + 1)))
                + _table_count(target, n)
                + _expect("sum of ages", target.scalar("SELECT SUM(age) FROM users"),
                          sum(r["age"] for r in rows)))

    return Plan(workload, scale, (rows,), (n, n), [check])


def _plan_w2(workload: Workload, target: Target, scale: float, n: int) -> Plan:
    rows = schema.user_rows(n, prefix="bulk")

    def check(result: Any, impl: Any, target: Target) -> list[str]:
        return (_table_count(target, n)
                + _expect("sum of ages", target.scalar("SELECT SUM(age) FROM users"),
                          sum(r["age"] for r in rows)))

    # batched: at most one statement per 100 rows
    return Plan(workload, scale, (rows,), (1, max(1, -(-n // 100))), [check])


def _plan_w3(workload: Workload, target: Target, scale: float, n: int) -> Plan:
    rows = _seed_users(target, n)

    def check(result: Any, impl: Any, target: Target) -> list[str]:
        if len(result) != n:
            return _expect("objects loaded", len(result), n)
        by_id = {impl.value(u, "id"): u for u in result}
        last = by_id.get(n)
        return (_expect("sum of ages", sum(impl.value(u, "age") for u in result),
                        sum(r["age"] for r in rows))
                + _expect("distinct ids", len(by_id), n)
                + _expect("name of the last user", impl.value(last, "name"), rows[-1]["name"])
                + _same_datetime(impl.value(last, "created_at"), rows[-1]["created_at"]))

    return Plan(workload, scale, (), (1, 1), [check])


def _plan_w4(workload: Workload, target: Target, scale: float, n: int) -> Plan:
    seeded = size(W345_USERS, scale)
    rows = _seed_users(target, seeded)
    ids = random.Random(4).sample(range(1, seeded + 1), min(n, seeded))
    ids = (ids * (n // len(ids) + 1))[:n]

    def check(result: Any, impl: Any, target: Target) -> list[str]:
        got = [(impl.value(u, "id"), impl.value(u, "email")) for u in result]
        want = [(i, rows[i - 1]["email"]) for i in ids]
        return (_expect("users found", len(got), n) + _expect("ids and emails", got == want, True)
                + _same_datetime(impl.value(result[-1], "created_at"),
                                 rows[ids[-1] - 1]["created_at"]))

    return Plan(workload, scale, (ids,), (n, n), [check])


def _plan_w5(workload: Workload, target: Target, scale: float, n: int) -> Plan:
    seeded = size(W345_USERS, scale)
    rows = _seed_users(target, seeded)
    thresholds = [18 + (i * 13) % 45 for i in range(n)]
    first_ids: dict[int, list[int]] = {}
    for t in set(thresholds):
        matching = (i for i in range(1, seeded + 1) if rows[i - 1]["age"] > t)
        first_ids[t] = list(itertools.islice(matching, PAGE))
    want = [first_ids[t] for t in thresholds]

    def check(result: Any, impl: Any, target: Target) -> list[str]:
        got = [[impl.value(u, "id") for u in page] for page in result]
        return _expect("pages", len(got), n) + _expect("ids of every page", got == want, True)

    return Plan(workload, scale, (thresholds,), (n, n), [check])


def _plan_w6(workload: Workload, target: Target, scale: float, n: int) -> Plan:
    rows = _seed_users(target, n)

    def check(result: Any, impl: Any, target: Target) -> list[str]:
        return (_expect("records saved", result, n)
                + _table_count(target, n, "WHERE age >= 100")
                + _expect("sum of ages", target.scalar("SELECT SUM(age) FROM users"),
                          sum(r["age"] for r in rows) + 100 * n))

    return Plan(workload, scale, (), (n + 1, n + 1), [check])


def _plan_w7(workload: Workload, target: Target, scale: float, n: int) -> Plan:
    _seed_users(target, n)
    posts = schema.post_rows(n, POSTS_PER_USER)
    target.seed_posts(posts)

    def check(result: Any, impl: Any, target: Target) -> list[str]:
        users, touched = result
        problems = _expect("users loaded", len(users), n) + _expect(
            "posts touched", touched, n * POSTS_PER_USER)
        wrong = 0
        for user in users:
            uid = impl.value(user, "id")
            mine = impl.posts_of(user)
            if len(mine) != POSTS_PER_USER or any(impl.value(p, "user_id") != uid for p in mine):
                wrong += 1
        return problems + _expect("users with wrong posts", wrong, 0)

    # users, then posts in IN lists (an ORM may split them into a few chunks)
    return Plan(workload, scale, (), (2, 2 + -(-n // 400)), [check])


_PLANS = {"W1": _plan_w1, "W2": _plan_w2, "W3": _plan_w3, "W4": _plan_w4, "W5": _plan_w5,
          "W6": _plan_w6, "W7": _plan_w7}
