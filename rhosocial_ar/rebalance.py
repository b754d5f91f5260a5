"""Resharding: move a sharded model's rows to the shards a new map gives them.

    report = rebalance(Invoice, new_shards=['s0', 's1', 's2', 's3'])
    report.before, report.after     # rows per shard: {'s0': 340, ...}, {'s0': 255, ...}
    report.moved                    # {('s0', 's3'): 85, ...}
    print(report)                   # a table; report.matches: after == what the scan planned

Every shard of either map is scanned (primary key and shard key), each row
whose new shard is not where it is goes there with ``transfer()`` (one atomic
batch per call: two-phase, last-resource or idempotent), and a last check
counts the rows per shard key on each shard (every key at home, else the
full scan again, and another pass). A rerun after a kill moves
only what is still misplaced: moved rows are gone from their old shard.
While the rows move the model is between two maps (moves.py): writes follow
the new map, reads see each row once. At the end the process keeps the new
map; the model's declaration is the user's to change.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from . import moves, routing, sharding
from .errors import ConfigurationError
from .recovery import recover
from .transfer import transfer
from .twophase import support_problem

__all__ = ["RebalanceReport", "rebalance"]

# test seam: called with the number of batches moved so far, after each batch
after_batch: Callable[[int], None] = lambda batches: None  # noqa: E731

SCAN_PAGE = 5000     # rows read per query while scanning a shard
PASSES = 3           # scans after the first, while rows written by the old map keep arriving


@dataclass(frozen=True)
class RebalanceReport:
    """What ``rebalance()`` found and did; counts are rows per shard."""

    model: str
    old_shards: tuple[str, ...]
    new_shards: tuple[str, ...]
    before: dict[str, int]                    # where the rows were when the move began
    expected: dict[str, int]                  # where the new map puts those rows
    after: dict[str, int]                     # where the rows are when it ended
    moved: dict[tuple[str, str], int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0
    recovered: int = 0                        # in-doubt branches of an earlier run finished
    copies: int = 0                           # rows a killed run left on two shards, counted once

    @property
    def rows_moved(self) -> int:
        return sum(self.moved.values())

    @property
    def matches(self) -> bool:
        """Every row counted before is counted after, each shard holding what the map says."""
        return (sum(self.before.values()) - self.copies == sum(self.after.values())
                and _nonzero(self.expected) == _nonzero(self.after))

    def __str__(self) -> str:
        names = list(dict.fromkeys((*self.new_shards, *self.old_shards)))
        width = max(len(n) for n in [*names, "shard", "total"])
        lines = [f"{self.model}: {list(self.old_shards)} -> {list(self.new_shards)}",
                 f"  {'shard':<{width}}  {'before':>9}  {'after':>9}  {'expected':>9}"]
        for name in names:
            lines.append(f"  {name:<{width}}  {self.before.get(name, 0):>9}  "
                         f"{self.after.get(name, 0):>9}  {self.expected.get(name, 0):>9}")
        lines.append(f"  {'total':<{width}}  {sum(self.before.values()):>9}  "
                     f"{sum(self.after.values()):>9}  {sum(self.expected.values()):>9}")
        moves_text = ", ".join(f"{a}->{b} {n}" for (a, b), n in self.moved.items()) or "none"
        lines.append(f"  moved {self.rows_moved} rows in {self.batches} batches "
                     f"({moves_text}), {self.seconds:.2f} s")
        if self.copies:
            lines.append(f"  {self.copies} rows were on two shards (a killed run's batch): "
                         f"the copy on the old shard was removed")
        if self.recovered:
            lines.append(f"  finished {self.recovered} in-doubt branches of an earlier run first")
        lines.append("  counts match" if self.matches else
                     "  COUNTS DIFFER: rows were written or deleted during the move")
        return "\n".join(lines)


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def rebalance(model: Any, new_shards: Sequence[str], new_shard_by: Any = None, *,
              batch_size: int = 1000, progress: bool = True, retries: int = 3) -> RebalanceReport:
    """Move every row of ``model`` whose shard under the new map differs from where it is.

    ``new_shard_by`` defaults to the model's mapping (``'hash'``, or its
    function); ranges need new boundaries for a new number of shards. Bad
    input raises ``ConfigurationError`` (``ConnectionNotFound`` for an unknown
    connection) before anything is written, and so do primary keys that
    would collide on a shard (rows keep their keys when they move).
    """
    started = time.perf_counter()
    old, new = _maps(model, new_shards, new_shard_by)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigurationError(f"batch_size must be a positive integer, not {batch_size!r}")
    resuming = moves.of(model)        # an earlier call in this process stopped mid-move
    move = resuming or moves.Move(model, old, new)
    _check_connections(model, move.shards)
    recovered = _recover(move.shards)

    moves.begin(move)                 # from here writes follow the new map
    model.__ar_shard_spec__ = new
    homes: dict[Any, str] = {}        # key -> shard by the new map, for every scan of this call
    try:
        scan = _scan(model, new, move.shards, homes)
        copies = _check_keys(model, scan)
    except BaseException:
        if resuming is None:          # nothing was written: as before the call
            model.__ar_shard_spec__ = old
            moves.end(model)
        raise
    before, expected = dict(scan.counts), scan.homes - Counter(copies)
    moved: Counter[tuple[str, str]] = Counter()
    batches = 0
    bar = _bar(progress, model, sum(len(v) for v in scan.misplaced.values()))
    try:
        for _ in range(PASSES + 1):
            if not scan.misplaced:
                break
            for (source, target), keys in scan.misplaced.items():
                for chunk in _chunks(keys, batch_size):
                    rows = _move(model, move, source, target, chunk, retries)
                    moved[(source, target)] += rows
                    batches += 1
                    if bar is not None:
                        bar.update(rows)
                    after_batch(batches)
            scan = _settled(model, new, move.shards, homes) or _scan(model, new, move.shards, homes)
            _check_keys(model, scan)
        if scan.misplaced:
            left = sum(len(v) for v in scan.misplaced.values())
            raise ConfigurationError(
                f"rebalance({model.__name__}): {left} rows are still on shards the new map does not "
                f"give them after {PASSES + 1} passes; is a process writing by the old map? "
                f"Reads in this process still see every row; run rebalance() again")
    finally:
        if bar is not None:
            bar.close()
    _finish(model, new)
    return RebalanceReport(model.__name__, old.shards, new.shards, before,
                           {s: expected.get(s, 0) for s in new.shards}, dict(scan.counts),
                           dict(moved), batches, time.perf_counter() - started, recovered,
                           sum(copies.values()))


def _maps(model: Any, new_shards: Sequence[str], new_shard_by: Any) -> tuple[Any, Any]:
    """(old map, new map), checked; the old one is the declaration, or a move's in progress."""
    if getattr(model, "__shards__", None) is None or not hasattr(model, "__ar_shard_spec__"):
        raise ConfigurationError(f"{getattr(model, '__name__', model)!r} is not a sharded model "
                                 f"(no __shards__): there is nothing to rebalance")
    current = moves.of(model)
    old = sharding.spec_of(model) if current is None else current.old
    by = new_shard_by if new_shard_by is not None else old.by
    new = sharding.make_spec(model, list(new_shards) if not isinstance(new_shards, str)
                             else new_shards, old.key, by)
    if current is not None and (current.new.shards, current.new.by) != (new.shards, new.by):
        raise ConfigurationError(
            f"{model.__name__} is being moved to {list(current.new.shards)} in this process; "
            f"finish that move (rebalance() to the same map) before another")
    if new.shards == old.shards and _same_mapping(old.by, new.by):
        raise ConfigurationError(f"the new shard map of {model.__name__} is the one it has "
                                 f"({list(old.shards)}, {old.by!r}): no row would move")
    return old, new


def _same_mapping(a: Any, b: Any) -> bool:
    if isinstance(a, sharding.shard_ranges) and isinstance(b, sharding.shard_ranges):
        return a.bounds == b.bounds
    return bool(a is b or (isinstance(a, str) and a == b))


def _check_connections(model: Any, names: Iterable[str]) -> None:
    """Every shard configured, sync, writable and holding the table, before any write."""
    table = model.__table__
    for name in names:
        conn = routing.get_connection(name)      # ConnectionNotFound names the configured ones
        if conn.is_async:
            raise ConfigurationError(f"shard {name!r} is an async connection; rebalance() moves "
                                     f"rows over sync connections (configure a sync URL for it)")
        if conn.read_only:
            raise ConfigurationError(f"shard {name!r} is read-only: rows cannot move to or from it")
        with conn.engine.connect() as sa_conn:
            present = sa.inspect(sa_conn).has_table(table.name, schema=table.schema)
        if not present:
            raise ConfigurationError(
                f"table {table.name!r} of {model.__name__} does not exist on shard {name!r}; "
                f"create it there first (migrations, or create_table() in a using_connection "
                f"block)")


def _recover(names: Iterable[str]) -> int:
    """Finish the two-phase branches a killed run left in doubt, so their rows are unlocked."""
    servers = [n for n in names if support_problem(routing.get_connection(n)) is None]
    if not servers:
        return 0
    report = recover(servers)
    return len(report.committed) + len(report.rolled_back)


@dataclass
class _Scan:
    """Where each row is: counts per shard, and the rows to move per (source, target)."""

    counts: Counter[str] = field(default_factory=Counter)
    homes: Counter[str] = field(default_factory=Counter)      # the same rows by the new map
    pks: dict[str, set[tuple[Any, ...]]] = field(default_factory=dict)   # primary keys, per shard
    misplaced: dict[tuple[str, str], list[tuple[Any, ...]]] = field(default_factory=dict)


def _scan(model: Any, new: Any, shards: Sequence[str], homes: dict[Any, str]) -> _Scan:
    """Read every shard's primary and shard keys in keyset pages (soft-deleted rows too).

    ``homes`` remembers each key's shard under the new map across the scans of
    one call: a key repeats over its rows, and hashing it is most of a
    scan's Python. The map is a function of the key, so the answer is the same.
    """
    pk_names = model.__ar_meta__.require_pk("rebalance")
    columns = (*pk_names, new.key) if new.key not in pk_names else pk_names
    at_key = columns.index(new.key)
    width = len(pk_names)
    pick, known = new.pick, homes.get

    def remember(key: Any) -> str:
        home = homes[key] = pick(key)
        return home

    scan = _Scan()
    for shard in shards:
        query = model.query().with_deleted().using(shard)._by_pk("asc").limit(SCAN_PAGE)
        pks: set[tuple[Any, ...]] = set()
        placed: Counter[str] = Counter()
        last: tuple[Any, ...] | None = None
        while True:
            page = query if last is None else query._after(last)
            rows = page._rows(columns)
            # a page at a time, column-wise in C where possible: not a Python step per row
            page_pks = list(zip(*(map(itemgetter(i), rows) for i in range(width)), strict=True))
            page_homes = [known(key) or remember(key) for key in map(itemgetter(at_key), rows)]
            pks.update(page_pks)
            placed.update(page_homes)
            for pk, home in zip(page_pks, page_homes, strict=True):
                if home != shard:
                    scan.misplaced.setdefault((shard, home), []).append(pk)
            if len(rows) < SCAN_PAGE:
                break
            last = tuple(rows[-1][:width])
        scan.homes.update(placed)
        scan.counts[shard] = len(pks)
        scan.pks[shard] = pks
    return scan


def _settled(model: Any, new: Any, shards: Sequence[str], homes: dict[Any, str]) -> _Scan | None:
    """The check after a pass, from rows per shard key counted by the servers: a row is at home
    when its key is. None when some key is not: ``_scan()`` then finds the rows' primary keys.

    Primary keys are unique on a shard, so a shard's rows are its count; the
    keys' primary keys are only needed for rows still to move. Integer keys
    only: a server groups text by its collation ('a' with 'A', or 'a ') and
    decimals by value (1.0 with 1.00), which a mapping may tell apart.
    """
    key, pick, known = new.key, new.pick, homes.get
    if not isinstance(model.__ar_meta__.column(key).type, sa.Integer):
        return None
    count = "rows_per_key"
    while count in model.__ar_meta__.name_set:      # a computed value's name: not a field's
        count += "_"
    scan = _Scan()
    for shard in shards:
        groups = (model.query().with_deleted().using(shard)
                  .select(key, **{count: sa.func.count()}).group_by(key).rows())
        total = 0
        for group in groups:
            value = group[key]
            home = known(value)
            if home is None:
                home = homes[value] = pick(value)
            if home != shard:
                return None
            total += group[count]
        scan.counts[shard] = total
        scan.homes[shard] += total
        scan.pks[shard] = set()
    return scan


def _check_keys(model: Any, scan: _Scan) -> Counter[str]:
    """Rows keep their primary keys: two different rows must not meet on a shard.

    A row on both its old and new shard (a killed run between the two sides of
    an idempotent batch) is the same row twice, not a collision: counted per
    shard it belongs on, and returned.
    """
    copies: Counter[str] = Counter()
    arriving: dict[str, list[tuple[str, tuple[Any, ...]]]] = {}
    for (source, target), pks in scan.misplaced.items():
        arriving.setdefault(target, []).extend((source, pk) for pk in pks)
    for target, items in arriving.items():
        seen: dict[tuple[Any, ...], str] = {}
        clashes: list[str] = []
        for source, pk in items:
            if pk in seen:
                clashes.append(f"{pk!r} from {seen[pk]!r} and {source!r}")
            elif pk in scan.pks.get(target, ()):
                if _same_row(model, pk, source, target):
                    copies[target] += 1
                else:
                    clashes.append(f"{pk!r} from {source!r} (another row has it there)")
            seen[pk] = source
        if clashes:
            raise ConfigurationError(
                f"rebalance({model.__name__}): rows moving to shard {target!r} would share primary "
                f"keys: {'; '.join(clashes[:5])}" + (f" and {len(clashes) - 5} more" if len(clashes) > 5
                                                      else "")
                + "; rows keep their keys when they move, so keys must be unique across shards "
                  "(UUIDs, or a range of ids per shard). Nothing was moved for this check")
    return copies


def _same_row(model: Any, pk: tuple[Any, ...], source: str, target: str) -> bool:
    found = [_by_pks(model.query().with_deleted().using(name), [pk]).all()
             for name in (source, target)]
    return all(len(f) == 1 for f in found) and found[0][0].model_dump() == found[1][0].model_dump()


def _by_pks(query: Any, pks: Sequence[tuple[Any, ...]]) -> Any:
    """``query`` narrowed to the rows with these primary keys."""
    names = query.model.__ar_meta__.require_pk("rebalance")
    if len(names) == 1:
        return query.where(**{names[0]: [pk[0] for pk in pks]})
    table = query.model.__table__
    return query.where(sa.tuple_(*(table.c[n] for n in names)).in_([tuple(pk) for pk in pks]))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _move(model: Any, move: moves.Move, source: str, target: str, pks: list[tuple[Any, ...]],
          retries: int) -> int:
    """One atomic batch: these rows from ``source`` to ``target``; no read in this process
    runs across the shards meanwhile."""
    query = _by_pks(model.query().with_deleted().using(source), pks)
    with move.lock.exclusive(), routing.using_connection(model, target):
        # one more than the rows: the first page is short, so no second (empty) two-phase round
        result = transfer(query, model, batch_size=len(pks) + 1, delete_source=True,
                          progress=False, retries=retries)
    return result.rows


def _bar(enabled: bool, model: Any, total: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    # disable=None: a bar on a terminal, nothing when stderr is a file or pipe
    return tqdm(total=total, unit="row", desc=f"rebalance {model.__name__}", disable=None)


def _finish(model: Any, new: Any) -> None:
    """The move is over: this process keeps the new map, as if the model declared it."""
    model.__ar_shard_spec__ = new
    model.__shards__ = list(new.shards)
    model.__shard_by__ = staticmethod(new.by) if callable(new.by) else new.by
    moves.end(model)
