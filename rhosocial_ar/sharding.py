"""Shards: one model over several connections, each row on the shard its key picks.

    class Invoice(IntegerPKMixin, ActiveRecord):
        __shards__ = ['s0', 's1', 's2']          # connection names, in a fixed order
        __shard_key__ = 'customer_id'            # hash by default (shard_index below)
        customer_id: int
        total: int

    Invoice.create(customer_id=7, total=10)      # written to shard_of(Invoice, 7)
    Invoice.where(customer_id=7).all()           # read from that shard alone
    Invoice.order_by('-total').limit(5).all()    # every shard in parallel, merged (fanout.py)
    Invoice.on_shard('s1').count()               # one shard, named

``__shard_by__`` says how a key maps to a shard: ``'hash'`` (the default),
``shard_ranges(1000, 5000)`` (boundaries between consecutive shards), or a
function of the key returning a shard name. This module holds the
declaration, the mapping and the routing of single-shard work; fanout.py
runs and merges what has to go to several shards.
"""

from __future__ import annotations

import bisect
import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import moves, routing
from .errors import ConfigurationError, CrossConnectionError, QueryError, UnknownColumnError
from .transaction import current_frame

if TYPE_CHECKING:
    from .query import Query

__all__ = ["ShardSpec", "canonical_bytes", "plan", "record_shard", "shard_index", "shard_of",
           "shard_ranges"]


def canonical_bytes(key: Any) -> bytes:
    """The bytes a shard key hashes as: the UTF-8 of its text, so 7 and '7' are one key.

    An int (not a bool) is its decimal digits, a UUID its lowercase hyphenated
    form, ``bytes`` themselves; any other type is refused rather than hashed
    by a representation that could change between versions.
    """
    if isinstance(key, bytes):
        return key
    if isinstance(key, bool) or not isinstance(key, int | str | uuid.UUID):
        raise QueryError(f"a shard key is hashed from an int, str, UUID or bytes, not "
                         f"{type(key).__name__} ({key!r}); give __shard_by__ a function for it")
    return str(key).encode("utf-8")


def shard_index(key: Any, count: int) -> int:
    """The default mapping: jump consistent hash of SHA-256's first 8 bytes (big-endian).

    Jump hash (Lamping and Veach, 2014) moves only about 1/(n+1) of the keys
    when a shard is appended to n, and none between the old shards. It is
    a few lines in any language, so other programs can place rows too.
    """
    state = int.from_bytes(hashlib.sha256(canonical_bytes(key)).digest()[:8], "big")
    bucket, jump = -1, 0
    while jump < count:
        bucket = jump
        state = (state * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        jump = int((bucket + 1) * ((1 << 31) / ((state >> 33) + 1)))
    return bucket


class shard_ranges:  # noqa: N801 - used like a function in a declaration
    """``__shard_by__ = shard_ranges(1000, 5000)``: key < 1000 on the first shard,
    1000 <= key < 5000 on the second, the rest on the third.

    One boundary fewer than there are shards, in increasing order.
    """

    def __init__(self, *bounds: Any) -> None:
        if list(bounds) != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ConfigurationError(f"shard_ranges{bounds!r}: boundaries must increase")
        self.bounds = bounds

    def __repr__(self) -> str:
        return f"shard_ranges{self.bounds!r}"


@dataclass(frozen=True)
class ShardSpec:
    """A sharded model's declaration, checked: its shards, key and mapping."""

    model: Any
    shards: tuple[str, ...]
    key: str
    by: Any

    def pick(self, value: Any) -> str:
        """The shard for the key ``value``."""
        if value is None:
            raise QueryError(f"{self.model.__name__}.{self.key} is None: the shard key must be "
                             f"set to pick a shard")
        by = self.by
        if by == "hash":
            return self.shards[shard_index(value, len(self.shards))]
        if isinstance(by, shard_ranges):
            return self.shards[bisect.bisect_right(by.bounds, value)]
        name = by(value)
        if name not in self.shards:
            raise QueryError(f"{self.model.__name__}.__shard_by__ mapped {value!r} to {name!r}, "
                             f"which is not one of its shards {list(self.shards)}")
        return str(name)


def declare(model: Any) -> None:
    """Check a model's ``__shards__``, ``__shard_key__`` and ``__shard_by__`` at class creation."""
    model.__ar_shard_spec__ = make_spec(model, model.__shards__, model.__shard_key__,
                                        getattr(model, "__shard_by__", "hash"))
    # create_all() would create the table on __connection__; create_table() does every shard
    table = model.__table__
    if table.metadata.tables.get(table.key) is table:
        table.metadata.remove(table)


def make_spec(model: Any, shards: Any, key: Any, by: Any) -> ShardSpec:
    """A shard map for ``model``, checked (``ConfigurationError``): its declaration or a new one."""
    name = model.__name__
    if (isinstance(shards, str) or not isinstance(shards, Sequence) or not shards
            or not all(isinstance(s, str) for s in shards) or len(set(shards)) != len(shards)):
        raise ConfigurationError(f"{name}.__shards__ must be a list of distinct connection "
                                 f"names, not {shards!r}")
    try:
        model.__ar_meta__.column(key)
    except UnknownColumnError as exc:
        raise ConfigurationError(f"{name}.__shard_key__: {exc}") from exc
    if isinstance(by, shard_ranges):
        if len(by.bounds) != len(shards) - 1:
            raise ConfigurationError(f"{name}: {by!r} needs {len(shards) - 1} boundaries for "
                                     f"{len(shards)} shards")
    elif by != "hash" and not callable(by):
        raise ConfigurationError(f"{name}.__shard_by__ must be 'hash', shard_ranges(...) or a "
                                 f"function of the key, not {by!r}")
    return ShardSpec(model, tuple(shards), key, by)


def spec_of(model: Any) -> ShardSpec:
    spec: ShardSpec = model.__ar_shard_spec__
    return spec


def shard_of(model: Any, key: Any) -> str:
    """The shard a row of ``model`` with shard key ``key`` lives on."""
    return spec_of(model).pick(key)


def check_shard(model: Any, name: str) -> str:
    """``name`` if it is one of the model's shards (of either map during a move), else a ``QueryError``."""
    move = moves.of(model)
    shards = spec_of(model).shards if move is None else move.shards
    if name not in shards:
        raise QueryError(f"{model.__name__} has no shard {name!r}; shards: {list(shards)}")
    return name


def plan(query: Query[Any]) -> tuple[str, ...]:
    """The shards a query must run on: a pinned one, those its key picks, or all."""
    model = query.model
    pinned = routing.override_for(model)
    if pinned is not None:
        return (pinned,)
    spec = spec_of(model)
    move = moves.of(model)       # during a move a key's rows may be on its old shard still
    every = spec.shards if move is None else move.shards
    values = dict(query._args)
    for item in query._wheres:
        if item[0] == "eq" and item[1] == spec.key:
            return (spec.pick(values[item[2]]),) if move is None else move.picks(values[item[2]])
    for item in query._wheres:
        if item[0] == "in" and item[1] == spec.key:
            picked = {s for value in values[item[2]]
                      for s in ((spec.pick(value),) if move is None else move.picks(value))}
            # an empty IN list matches nothing: any one shard says so
            return tuple(s for s in every if s in picked) or every[:1]
    return every


def single(query: Query[Any], what: str) -> Query[Any]:
    """The query pinned to its one shard; ``QueryError`` when it would need several."""
    shards = plan(query)
    if len(shards) > 1:
        raise QueryError(f"{what} of {query.model.__name__} runs on one shard: give the shard "
                         f"key ({spec_of(query.model).key}=...) or use on_shard(name)")
    return query.using(shards[0])


def record_shard(record: Any) -> str:
    """The shard a record writes to: where it came from, or where its key belongs.

    A new record in a ``using_connection()`` block must belong on that shard,
    and a saved record's key cannot change (that moves the row: ``transfer()``).
    """
    model = type(record)
    spec = spec_of(model)
    pinned = routing.override_for(model)
    origin: str | None = record._ar_origin
    value = record.__dict__.get(spec.key)
    if origin is not None and record._ar_saved is not None:
        if record._ar_saved.get(spec.key, value) != value:
            raise QueryError(f"{model.__name__}.{spec.key} of a saved record cannot change: the "
                             f"row would belong on another shard (move it with transfer())")
        if pinned is not None and pinned != origin:    # its id may be another row's there
            raise QueryError(f"this {model.__name__} was read from shard {origin!r}; writing it "
                             f"in a block pinned to {pinned!r} would touch another shard's row "
                             f"(nothing was written)")
        name = origin
    else:
        name = spec.pick(value)
        if pinned is not None and pinned != name:
            raise QueryError(f"{model.__name__} with {spec.key}={value!r} belongs on shard "
                             f"{name!r}, not on {pinned!r} (the using_connection() block)")
    check_unit(model, (name,))
    return name


def check_unit(model: Any, names: Sequence[str]) -> None:
    """A write to these shards while a transaction is open on another of them, or a write
    to several shards without a transaction on each, is not one atomic unit: refused."""
    spec = spec_of(model)
    missing = [n for n in names if current_frame(n) is None]
    if not missing:
        return
    open_elsewhere = [s for s in spec.shards if s not in names and current_frame(s) is not None]
    if len(names) > 1 or open_elsewhere:
        where = (f"a transaction is open on {open_elsewhere}" if open_elsewhere
                 else f"it touches shards {list(names)}")
        raise CrossConnectionError(
            f"a write of {model.__name__} to {missing} is not in one unit with the rest ({where}); "
            f"run it inside `with {model.__name__}.transaction(across_shards=True):` "
            f"(two-phase commit over the shards)"
        )


def write(query: Query[Any], runner: Callable[[Query[Any]], int]) -> int:
    """An UPDATE or DELETE of a sharded query: on its one shard, or on each inside one unit."""
    shards = plan(query)
    check_unit(query.model, shards)
    with moves.reading(shards):       # not between the two sides of a batch being moved
        return sum(runner(query.using(shard)) for shard in shards)


def connections(model: Any) -> list[Any]:
    """The connections a table of ``model`` lives on: its one, or every shard's unless pinned."""
    if model.__shards__ is None or routing.override_for(model) is not None:
        return [routing.resolve(model)]
    return [routing.get_connection(s) for s in spec_of(model).shards]


def across_shards(model: Any, isolation_level: str | None) -> Any:
    """One two-phase unit over every shard of ``model`` (``transaction(across_shards=True)``)."""
    from .twophase import two_phase  # twophase.py is a layer above; imported when asked for

    if model.__shards__ is None:
        raise QueryError(f"{model.__name__}.transaction(across_shards=True): the model is not "
                         f"sharded (no __shards__)")
    if isolation_level is not None:
        raise QueryError("transaction(across_shards=True) takes no isolation_level")
    return two_phase(*spec_of(model).shards)


def read_connections(query: Query[Any]) -> tuple[str, ...]:
    """The connections a read of ``query`` may go to: its one, or the shards it runs on."""
    if query._using is None and query.model.__shards__ is not None:
        return plan(query)
    return (routing.read_connection_name(query.model, query._using)[0],)


def by_shard(model: Any, rows: Iterable[Any], run: Callable[[list[Any]], int]) -> int:
    """Bulk writes of a sharded model: the rows (dicts or records) grouped by their key's
    shard, ``run(rows)`` once per shard in a block pinning it; several shards in one unit."""
    spec = spec_of(model)
    groups: dict[str, list[Any]] = {}
    for row in rows:
        value = row.get(spec.key) if isinstance(row, Mapping) else getattr(row, spec.key, None)
        groups.setdefault(spec.pick(value), []).append(row)
    pinned = routing.override_for(model)
    if pinned is not None and set(groups) - {pinned}:
        wrong = sorted(set(groups) - {pinned})
        raise QueryError(f"{model.__name__}: rows whose {spec.key} belongs on {wrong}, not on the "
                         f"pinned {pinned!r}; nothing was written")
    names = [s for s in spec.shards if s in groups]
    check_unit(model, names)    # before any shard is written
    total = 0
    for name in names:
        with routing.using_connection(model, name):
            total += run(groups[name])
    return total
