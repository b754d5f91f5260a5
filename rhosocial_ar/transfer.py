"""Move or copy rows between connections, each batch atomic across both databases.

    result = transfer(LegacyUser.where(active=True), ModernUser,
                      map={'email': 'email_address', 'name': lambda u: f'{u.first} {u.last}'},
                      batch_size=1000, delete_source=True)
    result.rows, result.batches, result.strategy, result.seconds
    result = await atransfer(...)       # async connections: the same, in the bridge

Rows are read in keyset order of the source's primary key and written with an
upsert on ``conflict_keys`` (the target's primary key by default), so
writing a batch twice changes nothing. Per batch:

- ``two-phase``: both databases prepare, the decision is logged, both commit;
- ``last-resource``: one side is SQLite and commits last with the decision;
- ``idempotent``: neither side can prepare (two SQLite files): the target is
  upserted and committed, then the source rows are deleted; a crash between
  the two leaves rows in both, and the re-run upserts them again (no
  duplicate) before deleting them;
- ``local``: both models on one connection: one ordinary transaction.

After a crash, run ``recover()`` (two-phase strategies) and the same
``transfer()`` again: it continues where it stopped, and every row ends up
exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from . import aio, bulk, dialects, routing
from .compat import add_note
from .errors import ConfigurationError, QueryError, TwoPhaseAborted
from .query import Query
from .transaction import Transaction
from .twophase import support_problem, two_phase

__all__ = ["TransferResult", "atransfer", "transfer"]

log = logging.getLogger("rhosocial_ar")

# test seam: called with 'between_sides' (idempotent strategy) and
# 'after_batch' so the crash tests can kill the process there
crash_point: Callable[[str], None] = lambda step: None  # noqa: E731

Mapper = Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class TransferResult:
    """What ``transfer()`` did."""

    rows: int
    batches: int
    strategy: str
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else float("inf")


class _Reader:
    """How batches are read: records when a map function needs them, else column values.

    Without a function in ``map`` only column values travel, so a page is
    read as rows (the primary key first) and no source record is built.
    """

    def __init__(self, source: Any, target: Any, spec: Mapping[str, Any] | Mapper | None) -> None:
        self.pks: tuple[str, ...] = source.__ar_meta__.require_pk("transfer")
        pairs = _column_pairs(source, target, spec)
        self.columns: tuple[str, ...] | None = None
        if pairs is None:
            assert spec is not None      # no map at all means the shared column names
            self.to_row = _record_mapper(spec)
            return
        targets = tuple(t for t, _ in pairs)
        self.columns = (*self.pks, *dict.fromkeys(s for _, s in pairs if s not in self.pks))
        at = {name: i for i, name in enumerate(self.columns)}
        positions = [at[s] for _, s in pairs]
        if len(positions) == 1:
            only, position = targets[0], positions[0]
            self.to_row = lambda row: {only: row[position]}
        else:
            values = itemgetter(*positions)
            self.to_row = lambda row: dict(zip(targets, values(row), strict=True))

    def read(self, page: Query[Any], lock: bool) -> list[Any]:
        page = page.for_update() if lock else page
        return page.all() if self.columns is None else page._rows(self.columns)

    def key(self, item: Any) -> tuple[Any, ...]:
        """The primary key of a record or row read."""
        if self.columns is None:
            return tuple(getattr(item, n) for n in self.pks)
        return tuple(item[:len(self.pks)])


def _column_pairs(source: Any, target: Any, spec: Mapping[str, Any] | Mapper | None,
                  ) -> list[tuple[str, str]] | None:
    """(target column, source column) for a map of names only; None when a function is in it."""
    if callable(spec):
        return None
    if spec is None:
        shared = [n for n in target.__ar_meta__.names if n in source.__ar_meta__.name_set]
        if not shared:
            raise ConfigurationError(
                f"{source.__name__} and {target.__name__} share no column names; pass map="
            )
        return [(n, n) for n in shared]
    if not spec:
        raise ConfigurationError("map= is empty; give each target column a source column or "
                                 "a function, or leave map out to copy the shared columns")
    for name, how in spec.items():
        target.__ar_meta__.column(name)
        if isinstance(how, str):
            source.__ar_meta__.column(how)
        elif not callable(how):
            raise ConfigurationError(f"map[{name!r}] must be a source column name or a function")
    if all(isinstance(how, str) for how in spec.values()):
        return list(spec.items())
    return None


def _record_mapper(spec: Mapping[str, Any] | Mapper) -> Mapper:
    """A function from a source record to a target row, for a map with functions in it."""
    if callable(spec):
        return spec
    return lambda record: {
        name: getattr(record, how) if isinstance(how, str) else how(record)
        for name, how in spec.items()
    }


def _strategy(source_name: str, target_name: str) -> str:
    if source_name == target_name:
        return "local"
    lacking = [n for n in (source_name, target_name)
               if support_problem(routing.get_connection(n)) is not None]
    return {0: "two-phase", 1: "last-resource"}.get(len(lacking), "idempotent")


def _progress(query: Query[Any], enabled: bool, label: str) -> Any:
    if not enabled:
        return None          # and no COUNT(*) either
    from tqdm import tqdm

    # disable=None: a bar on a terminal, nothing when stderr is a file or pipe
    return tqdm(total=query.count(), unit="row", desc=label, disable=None, leave=True)


def transfer(source_query: Any, target_model: Any, map: Mapping[str, Any] | Mapper | None = None,  # noqa: A002
             batch_size: int = 1000, delete_source: bool = False,
             conflict_keys: list[str] | None = None, progress: bool = True,
             retries: int = 3) -> TransferResult:
    """Copy (or with ``delete_source`` move) the rows of ``source_query`` into ``target_model``.

    A batch that hits a deadlock or lock timeout is rolled back on both sides
    and tried again, up to ``retries`` more times.
    """
    query: Query[Any] = source_query if isinstance(source_query, Query) else source_query.query()
    source = query.model
    if query._order or query._limit is not None or query._offset is not None:
        raise QueryError("transfer() pages by primary key; remove order_by/limit/offset")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigurationError(f"batch_size must be a positive integer, not {batch_size!r}")
    keys = list(conflict_keys or target_model.__ar_meta__.require_pk("transfer"))
    for key in keys:
        target_model.__ar_meta__.column(key)
    reader = _Reader(source, target_model, map)
    source_name = routing.connection_name_for(source, query._using)
    target_name = routing.connection_name_for(target_model)
    for name in (source_name, target_name):
        if routing.get_connection(name).read_only and (name == target_name or delete_source):
            raise ConfigurationError(f"connection {name!r} is read-only")
    strategy = _strategy(source_name, target_name)
    query = query.using(source_name)

    started = time.perf_counter()
    bar = _progress(query, progress,
                    f"{source.__name__}@{source_name} -> {target_model.__name__}@{target_name}")
    rows = batches = 0
    try:
        for moved in _batches(query, reader, strategy, source_name, target_name, batch_size,
                              retries, lambda items: _write(items, reader, target_model, keys,
                                                            source, delete_source, strategy,
                                                            source_name)):
            rows += moved
            batches += 1
            if bar is not None:
                bar.update(moved)
            crash_point("after_batch")
    finally:
        if bar is not None:
            bar.close()
    return TransferResult(rows, batches, strategy, time.perf_counter() - started)


async def atransfer(source_query: Any, target_model: Any,
                    map: Mapping[str, Any] | Mapper | None = None,  # noqa: A002
                    batch_size: int = 1000, delete_source: bool = False,
                    conflict_keys: list[str] | None = None, progress: bool = True,
                    retries: int = 3) -> TransferResult:
    """``transfer()`` between async connections, in the bridge."""
    return await aio.run(transfer, source_query, target_model, map, batch_size, delete_source,
                         conflict_keys, progress, retries)


def _batches(query: Query[Any], reader: _Reader, strategy: str, source_name: str,
             target_name: str, size: int, retries: int,
             write: Callable[[list[Any]], int]) -> Iterator[int]:
    """Read each batch and write it atomically; yields the rows of each batch."""
    last: tuple[Any, ...] | None = None
    while True:
        page = query._by_pk("asc").limit(size)
        if last is not None:
            page = page._after(last)
        for attempt in range(retries + 1):
            try:
                items, count = _one_batch(page, reader, strategy, source_name, target_name, write)
                break
            except (sa.exc.DBAPIError, TwoPhaseAborted) as exc:
                if not _retryable(exc) or attempt == retries:
                    add_note(exc, f"transfer(): the batch after {last} was rolled back on both "
                                  f"sides after {attempt + 1} attempt(s); no row of it moved")
                    raise
                log.info("transfer(): batch after %s hit %s, retrying", last,
                         type(getattr(exc, "orig", None) or exc).__name__)
                aio.sleep(min(0.05 * 2 ** attempt, 1.0))   # in atransfer(): the loop runs on
        if not items:
            return
        last = reader.key(items[-1])
        yield count
        if len(items) < size:
            return


def _retryable(exc: Exception) -> bool:
    """A deadlock or lock timeout, or a recover() that decided abort first: both sides rolled back."""
    return isinstance(exc, TwoPhaseAborted) or dialects.is_retryable(exc)


def _one_batch(page: Query[Any], reader: _Reader, strategy: str, source_name: str,
               target_name: str, write: Callable[[list[Any]], int]) -> tuple[list[Any], int]:
    """Read one page and write it, atomically for the strategy."""
    if strategy == "local":
        with Transaction(source_name):
            items = reader.read(page, lock=True)
            return items, write(items) if items else 0
    if strategy == "idempotent":
        items = reader.read(page, lock=False)
        return items, write(items) if items else 0
    with two_phase(source_name, target_name):
        items = reader.read(page, lock=True)          # read inside: locked until the end
        return items, write(items) if items else 0


def _write(items: list[Any], reader: _Reader, target: Any, keys: list[str], source: Any,
           delete_source: bool, strategy: str, source_name: str) -> int:
    """Upsert one batch into the target and, when moving, delete it from the source."""
    to_row = reader.to_row
    rows = [to_row(item) for item in items]
    bulk.upsert_many(target, rows, keys, max(1, len(rows)), None)
    if strategy == "idempotent":
        crash_point("between_sides")
    if delete_source:
        doomed = source.using(source_name).with_deleted()
        pks = reader.pks
        if len(pks) == 1:
            doomed.where(**{pks[0]: [reader.key(item)[0] for item in items]}).hard_delete()
        else:
            for item in items:
                doomed.where(**dict(zip(pks, reader.key(item), strict=True))).hard_delete()
    return len(items)
