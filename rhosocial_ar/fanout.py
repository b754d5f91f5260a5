"""Queries over every shard at once: run in parallel, merged as one result.

    Invoice.order_by('-total').limit(20).all()   # each shard its top 20, merged to 20
    Invoice.count(); Invoice.avg('total')        # combined: avg from sums and counts

    with partial_results() as report:            # opt in to answers without failed shards
        rows = Invoice.order_by('-total').limit(20).all()
    report.failed                                # {'s2': OperationalError(...)}; {} if none

Each shard runs on a bounded thread pool (``WORKERS`` threads) in a copy of
the caller's context, so ``using_connection()`` blocks, open transactions
and the request scope are the caller's. On async connections (``aall()``,
``acount()``, ...) each shard is a task of the caller's event loop instead,
in a copy of its context too (``bridge.concurrently``). A shard that fails
raises ``ShardError`` naming it once every shard has answered; never fewer
rows in silence.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextvars import ContextVar, copy_context
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from . import moves
from .connections import get_connection
from .errors import QueryError, ShardError, describe_error
from .fastpath import bridge
from .relation import eager_load

if TYPE_CHECKING:
    from .query import Query

__all__ = ["WORKERS", "aggregate", "all_records", "batches", "partial_results", "rows"]

log = logging.getLogger("rhosocial_ar")
R = TypeVar("R")

# threads shared by every fan-out of the process; a query over more shards queues
WORKERS = 8
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_in_worker: ContextVar[bool] = ContextVar("rhosocial_ar_in_fanout", default=False)
_partial: ContextVar[partial_results | None] = ContextVar("rhosocial_ar_partial", default=None)


class partial_results:  # noqa: N801 - a block, used like a function
    """A block whose fan-out queries leave failed shards out instead of raising.

    ``failed`` maps each shard that failed in the block to its error; the
    results are partial exactly when it is not empty (``report.partial``).
    """

    def __init__(self) -> None:
        self.failed: dict[str, BaseException] = {}
        self._token: Any = None

    @property
    def partial(self) -> bool:
        return bool(self.failed)

    def __enter__(self) -> partial_results:
        self._token = _partial.set(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _partial.reset(self._token)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="rhosocial_ar-shard")
        return _pool


def _in_copy(work: Callable[[str], R], shard: str) -> R:
    _in_worker.set(True)     # this copy of the caller's context only
    return work(shard)


def gather(shards: Sequence[str], work: Callable[[str], R]) -> list[R]:
    """``work(shard)`` for every shard, in parallel; the answers in shard order.

    Only database errors count as a shard failing; any other error (a bad
    column name, say) is the query's own and raised as it is.
    """
    connections = [get_connection(s) for s in shards]   # an unknown name fails before any SQL
    with moves.reading(shards):     # a shard move's batch is all done or not begun (moves.py)
        return _answers(shards, _run(shards, connections, work))


def _run(shards: Sequence[str], connections: list[Any], work: Callable[[str], R],
         ) -> list[tuple[bool, Any]]:
    outcomes: list[tuple[bool, Any]] = []
    parallel = len(shards) > 1 and not _in_worker.get()   # not in a fan-out inside a fan-out
    if parallel and any(c.is_async for c in connections):
        # async: one task per shard on the caller's event loop (None: not in the bridge)
        answers = bridge.concurrently([functools.partial(_in_copy, work, s) for s in shards])
        if answers is not None:
            for ok, answer in answers:
                if not ok and not isinstance(answer, sa.exc.SQLAlchemyError):
                    raise answer
            return answers
        parallel = False
    if not parallel:
        for shard in shards:
            try:
                outcomes.append((True, work(shard)))
            except sa.exc.SQLAlchemyError as exc:
                outcomes.append((False, exc))
    else:
        pool = _executor()
        futures: list[Future[R]] = [pool.submit(copy_context().run, _in_copy, work, shard)
                                    for shard in shards[1:]]
        # the first shard in this thread, as the pool's threads would run it: one hand-off
        # fewer, which is much of a small query's cost
        own: Future[R] = Future()
        try:
            own.set_result(copy_context().run(_in_copy, work, shards[0]))
        except BaseException as exc:     # raised below, once every shard has stopped
            own.set_exception(exc)
        wait(futures)           # every shard has stopped before anything is raised
        for future in (own, *futures):
            error = future.exception()
            if error is None:
                outcomes.append((True, future.result()))
            elif isinstance(error, sa.exc.SQLAlchemyError):
                outcomes.append((False, error))
            else:
                raise error
    return outcomes


def _answers(shards: Sequence[str], outcomes: list[tuple[bool, Any]]) -> list[Any]:
    failed = {s: result for s, (ok, result) in zip(shards, outcomes, strict=True) if not ok}
    if failed:
        report = _partial.get()
        if report is None:
            shard, error = next(iter(failed.items()))
            raise ShardError(
                f"shard {shard!r} failed: {describe_error(error)}"
                + (f" (and {len(failed) - 1} more shards)" if len(failed) > 1 else "")
                + "; no result was returned (inside partial_results() the other shards' are)",
                shard=shard, failures=failed) from error
        report.failed.update(failed)
        log.warning("fan-out without shards %s (partial_results): %s", sorted(failed),
                    "; ".join(f"{s}: {describe_error(e)}" for s, e in failed.items()))
    return [result for ok, result in outcomes if ok]


def _per_shard(query: Query[Any]) -> Query[Any]:
    """The query each shard runs: enough rows for the global page, relations loaded after."""
    if query._lock:
        raise QueryError("for_update() on several shards: lock rows on one shard at a time")
    per = query._copy()
    per._with = ()
    per._order = ()
    per._add_order(_nulls_first(query))
    if query._limit is not None:
        per._limit = query._limit + (query._offset or 0)
    per._offset = None
    return per


def _nulls_first(query: Query[Any]) -> tuple[Any, ...]:
    """The query's order with NULL first ascending on every backend, as the merge expects.

    PostgreSQL puts NULL last ascending, SQLite and MariaDB first: a nullable
    column is ordered by ``CASE WHEN col IS NULL THEN 0 ELSE 1 END`` first.
    """
    table = query._meta.table
    keys: list[Any] = []
    for name, direction in _order_names(query):
        column = table.c[name]
        if column.nullable:
            present = sa.case((column.is_(None), 0), else_=1)
            keys.append(present.asc() if direction == "asc" else present.desc())
        keys.append(column.asc() if direction == "asc" else column.desc())
    return tuple(keys)


def _merged(query: Query[Any], parts: list[list[Any]], getters: Sequence[Callable[[Any], Any]],
            directions: Sequence[str]) -> list[Any]:
    """The shards' ordered answers merged (k-way) and paged by the query's offset and limit."""
    if getters and len(set(directions)) == 1:
        # one direction: a key per row, computed once, instead of a comparison per pair
        merged: Iterable[Any] = heapq.merge(*parts, key=functools.partial(_key, getters),
                                            reverse=directions[0] == "desc")
    elif getters:
        key = functools.cmp_to_key(functools.partial(_compare, getters, directions))
        merged = heapq.merge(*parts, key=key)
    else:
        merged = itertools.chain.from_iterable(parts)
    start = query._offset or 0
    stop = None if query._limit is None else start + query._limit
    return list(itertools.islice(merged, start, stop))


def _key(getters: Sequence[Callable[[Any], Any]], row: Any) -> tuple[tuple[bool, Any], ...]:
    # NULL before any value, as _compare orders it; reversed as a whole for descending
    return tuple((value is not None, value) for value in (get(row) for get in getters))


def _compare(getters: Sequence[Callable[[Any], Any]], directions: Sequence[str],
             a: Any, b: Any) -> int:
    # NULL sorts first ascending, as every shard was asked to order it (_nulls_first)
    for get, direction in zip(getters, directions, strict=True):
        x, y = get(a), get(b)
        if x == y:
            continue
        result = -1 if x is None else 1 if y is None else (-1 if x < y else 1)
        return -result if direction == "desc" else result
    return 0


def _order_names(query: Query[Any]) -> list[tuple[str, str]]:
    names = []
    for item in query._order:
        if item[0] != "name":
            raise QueryError("order_by() over several shards takes column names; the merge "
                             "compares their values")
        names.append((item[1], item[2]))
    return names


def all_records(query: Query[Any], shards: Sequence[str]) -> list[Any]:
    """``query.all()`` over several shards."""
    order = _order_names(query)
    if query._select is not None:
        missing = [n for n, _ in order if n not in query._select]
        if missing:
            raise QueryError(f"order_by({', '.join(missing)}) over several shards needs those "
                             f"columns among the selected ones")
    per = _per_shard(query)
    parts = gather(shards, lambda shard: per.using(shard).all())
    getters = [_attribute(name) for name, _ in order]
    records = _merged(query, parts, getters, [d for _, d in order])
    if query._with:
        eager_load(query.model, records, query._with)
    return records


def _attribute(name: str) -> Callable[[Any], Any]:
    return lambda record: record.__dict__.get(name)


def rows(query: Query[Any], names: Sequence[str], shards: Sequence[str]) -> list[Sequence[Any]]:
    """``query._rows(names)`` (pluck) over several shards: merged rows of those columns."""
    unique = tuple(dict.fromkeys(names))
    order = _order_names(query)
    extra = tuple(n for n, _ in order if n not in unique)   # fetched to merge, then cut
    columns = unique + extra
    per = _per_shard(query)
    parts = gather(shards, lambda shard: list(per.using(shard)._rows(columns)))
    getters = [_item(columns.index(n)) for n, _ in order]
    merged = _merged(query, parts, getters, [d for _, d in order])
    return [tuple(row[:len(unique)]) for row in merged] if extra else merged


def _item(index: int) -> Callable[[Any], Any]:
    return lambda row: row[index]


def aggregate(query: Query[Any], function: str, name: str | None, distinct: bool,
              shards: Sequence[str]) -> Any:
    """count/sum/min/max/avg over several shards, combined from each shard's part."""
    if query._limit is not None or query._offset is not None or query._extra is not None:
        raise QueryError(f"{function}() over a page or groups of several shards is not "
                         f"supported; aggregate on one shard (on_shard) or without limit/offset")
    if distinct:
        raise QueryError(f"{function}(distinct=True) over several shards cannot be combined "
                         f"from their parts; count on each shard with on_shard(name)")
    if function == "avg":
        assert name is not None
        parts = gather(shards, lambda s: (query.using(s).sum(name), query.using(s).count(name)))
        total = _sum(p[0] for p in parts)
        count = sum(p[1] for p in parts)
        if not count:
            return None
        return total / count if isinstance(total, Decimal) else float(total) / count
    answers = gather(shards, lambda s: query.using(s)._aggregate(function, name, distinct))
    if function == "count":
        return sum(int(a) for a in answers)
    if function == "sum":
        return _sum(answers)
    present = [a for a in answers if a is not None]
    if not present:
        return None
    return min(present) if function == "min" else max(present)


def _sum(values: Iterable[Any]) -> Any:
    """The sum of the shards' sums; a Decimal if any is one (a server's exact sum)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if any(isinstance(v, Decimal) for v in present):
        return sum((v if isinstance(v, Decimal) else Decimal(str(v)) for v in present), Decimal(0))
    return sum(present)


def batches(query: Query[Any], size: int, shards: Sequence[str]) -> Iterator[list[Any]]:
    """``batch()`` over several shards: each shard's batches in turn (keys may repeat between
    shards, so one keyset over all of them could skip rows)."""
    remaining = query._limit
    for shard in shards:
        if remaining is not None and remaining <= 0:
            return
        pinned = query.using(shard)
        if remaining is not None:
            pinned = pinned.limit(remaining)
        for batch in pinned.batch(size):
            if remaining is not None:
                remaining -= len(batch)
            yield batch
