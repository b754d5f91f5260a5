"""The sharding benchmark's models, seed and measured operations.

    configure(urls)              # connections s0..s3 (and s4, flat) on the clusters
    seed(400_000)                # orders spread by customer_id over s0..s3, and the same rows
                                 # in one unsharded table 'flat_orders' on the first cluster
    OPERATIONS['fanout_top']()   # one call of a measured operation

Rows are written with COPY through the raw driver (not timed). Both tables
have indexes on customer_id and created_at, as an application ordering by
created_at would.
"""

from __future__ import annotations

import datetime
import heapq
import io
import random
from collections.abc import Callable
from typing import Any

from rhosocial_ar import ActiveRecord, ConnectionManager, Field, get_connection, shard_of

SHARDS = ["s0", "s1", "s2", "s3"]
PER_CUSTOMER = 10            # orders per customer: 400,000 rows are 40,000 customers
PAGE = 20                    # order_by('-created_at').limit(PAGE)
START = datetime.datetime(2024, 1, 1)


class ShardOrder(ActiveRecord):
    __table_name__ = "shard_orders"
    __shards__ = SHARDS
    __shard_key__ = "customer_id"
    id: int = Field(primary_key=True, autoincrement=False)    # unique across shards
    customer_id: int = Field(index=True)
    created_at: datetime.datetime = Field(index=True)
    total: int


class FlatOrder(ActiveRecord):
    """The same rows on one connection: the unsharded model key-routed lookups are judged by."""

    __table_name__ = "flat_orders"
    __connection__ = "flat"
    id: int = Field(primary_key=True, autoincrement=False)
    customer_id: int = Field(index=True)
    created_at: datetime.datetime = Field(index=True)
    total: int


COLUMNS = ("id", "customer_id", "created_at", "total")


def configure(urls: list[str]) -> None:
    """s0.. on the clusters in order; 'flat' on the first cluster beside s0."""
    names = {f"s{i}": {"url": url} for i, url in enumerate(urls)}
    ConnectionManager.configure({**names, "flat": {"url": urls[0]}})


def rows(count: int, seed: int = 21) -> list[tuple[int, int, datetime.datetime, int]]:
    """``count`` orders, PER_CUSTOMER per customer, created at random seconds over a year."""
    rng = random.Random(seed)
    return [(i + 1, i // PER_CUSTOMER + 1, START + datetime.timedelta(seconds=rng.randrange(31_536_000),
                                                                        microseconds=i % 1000),
             rng.randrange(1, 100_000)) for i in range(count)]


def copy_rows(connection: str, table: str, data: list[tuple[Any, ...]],
              columns: tuple[str, ...] = COLUMNS) -> None:
    """COPY ``data`` into ``table`` on ``connection`` with the raw driver, then ANALYZE it."""
    text = "".join("\t".join(str(v) for v in row) + "\n" for row in data)
    raw = get_connection(connection).engine.raw_connection()
    driver: Any = raw.driver_connection
    try:
        cursor = raw.cursor()
        cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", io.StringIO(text))
        raw.commit()
        driver.autocommit = True      # VACUUM runs outside a transaction
        cursor.execute(f"VACUUM ANALYZE {table}")
        driver.autocommit = False
    finally:
        raw.close()


def by_shard(model: Any, data: list[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows grouped by the shard their customer_id picks (one pick per customer)."""
    picks: dict[int, str] = {}
    groups: dict[str, list[tuple[Any, ...]]] = {}
    for row in data:
        shard = picks.get(row[1])
        if shard is None:
            shard = picks[row[1]] = shard_of(model, row[1])
        groups.setdefault(shard, []).append(row)
    return groups


def seed(count: int) -> dict[str, int]:
    """Fresh tables, ``count`` rows sharded and the same rows flat; returns rows per shard."""
    for model in (ShardOrder, FlatOrder):
        model.drop_table()
        model.create_table()
    data = rows(count)
    groups = by_shard(ShardOrder, data)
    for shard in SHARDS:
        copy_rows(shard, "shard_orders", groups.get(shard, []))
    copy_rows("flat", "flat_orders", data)
    return {shard: len(groups.get(shard, [])) for shard in SHARDS}


# -- the measured operations: each one call, returning what is checked -----------------------

def fanout_top() -> list[int]:
    return [o.id for o in ShardOrder.order_by("-created_at").limit(PAGE).all()]


def one_shard_top() -> list[int]:
    return [o.id for o in ShardOrder.on_shard(SHARDS[0]).order_by("-created_at").limit(PAGE).all()]


def sequential_top() -> list[int]:
    """The same per-shard queries one after another (a loop of on_shard), merged."""
    parts = [ShardOrder.on_shard(s).order_by("-created_at").limit(PAGE).all() for s in SHARDS]
    merged = heapq.merge(*parts, key=lambda o: o.created_at, reverse=True)
    return [o.id for _, o in zip(range(PAGE), merged, strict=False)]


def flat_top() -> list[int]:
    return [o.id for o in FlatOrder.order_by("-created_at").limit(PAGE).all()]


def fanout_count() -> int:
    return ShardOrder.count()


def one_shard_count() -> int:
    return ShardOrder.on_shard(SHARDS[0]).count()


def sequential_count() -> int:
    return sum(ShardOrder.on_shard(s).count() for s in SHARDS)


def lookups(model: Any, keys: list[int]) -> Callable[[], int]:
    """``model.where(customer_id=k).all()`` for every key; returns the rows read."""
    def run() -> int:
        return sum(len(model.where(customer_id=k).all()) for k in keys)
    return run
