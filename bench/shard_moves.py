"""Rebalance against a plain copy: the same rows moved from 4 shards to 5.

    plain = plain_move(rows)        # seconds, rows moved: raw drivers, not atomic
    report = ar_rebalance(rows)     # rhosocial_ar.rebalance() (two-phase batches on PostgreSQL)

Both start from the same rows on s0..s3 (tables of their own) and end with
every row on the shard jump hash gives it among s0..s4. The plain copy is
what a careful script does without atomicity: scan each shard's keys (each
customer's shard computed once), then per batch of BATCH rows select them,
insert them on the new shard with one multi-row INSERT, commit, delete them
from the old one, commit.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from typing import Any

from psycopg2.extras import execute_values

from rhosocial_ar import ActiveRecord, Field, get_connection, rebalance
from rhosocial_ar.sharding import shard_index

from .shard_workloads import COLUMNS, SHARDS, by_shard, copy_rows, rows

NEW_SHARDS = [*SHARDS, "s4"]
BATCH = 1000


class MoveOrder(ActiveRecord):
    __table_name__ = "move_orders"
    __shards__ = SHARDS
    __shard_key__ = "customer_id"
    id: int = Field(primary_key=True, autoincrement=False)
    customer_id: int = Field(index=True)
    created_at: datetime.datetime
    total: int


class PlainOrder(ActiveRecord):
    """The plain copy's table, the same shape; only created through the model."""

    __table_name__ = "plain_orders"
    __shards__ = NEW_SHARDS
    __shard_key__ = "customer_id"
    id: int = Field(primary_key=True, autoincrement=False)
    customer_id: int = Field(index=True)
    created_at: datetime.datetime
    total: int


def seed(count: int) -> None:
    """Both tables on every shard of the new map, the rows on s0..s3 by the old one."""
    PlainOrder.create_table()
    MoveOrder.create_table()                 # on s0..s3, the declared map; and on s4 for the move
    MoveOrder.__table__.create(get_connection("s4").engine, checkfirst=True)
    groups = by_shard(MoveOrder, rows(count, seed=45))
    for shard in SHARDS:
        for table in ("move_orders", "plain_orders"):
            copy_rows(shard, table, groups.get(shard, []))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def plain_move() -> tuple[float, int]:
    """Move plain_orders' misplaced rows with the raw drivers; (seconds, rows moved)."""
    raws = {s: get_connection(s).engine.raw_connection() for s in NEW_SHARDS}
    try:
        for raw in raws.values():                  # connected before the clock starts
            raw.cursor().execute("SELECT 1")
            raw.commit()
        started, moved = time.perf_counter(), 0
        columns = ", ".join(COLUMNS)
        for source in SHARDS:
            read = raws[source].cursor()
            read.execute("SELECT id, customer_id FROM plain_orders")
            targets: dict[str, list[int]] = {}
            homes: dict[int, str] = {}             # hashed once per customer, as rebalance() does
            for pk, key in read.fetchall():
                target = homes.get(key)
                if target is None:
                    target = homes[key] = NEW_SHARDS[shard_index(key, len(NEW_SHARDS))]
                if target != source:
                    targets.setdefault(target, []).append(pk)
            raws[source].commit()
            for target, pks in targets.items():
                write = raws[target].cursor()
                for chunk in _chunks(pks, BATCH):
                    read.execute(f"SELECT {columns} FROM plain_orders WHERE id = ANY(%s)", (chunk,))
                    batch = read.fetchall()
                    execute_values(write, f"INSERT INTO plain_orders ({columns}) VALUES %s", batch,
                                   page_size=BATCH)
                    raws[target].commit()          # the target first: a crash duplicates, never loses
                    read.execute("DELETE FROM plain_orders WHERE id = ANY(%s)", (chunk,))
                    raws[source].commit()
                    moved += len(batch)
        return time.perf_counter() - started, moved
    finally:
        for raw in raws.values():
            raw.close()


def ar_rebalance() -> Any:
    """rebalance(MoveOrder, new_shards=s0..s4); its report (rows moved, seconds, counts)."""
    return rebalance(MoveOrder, new_shards=NEW_SHARDS, batch_size=BATCH, progress=False)


def counts(table: str) -> dict[str, int]:
    out = {}
    for shard in NEW_SHARDS:
        raw = get_connection(shard).engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(f"SELECT COUNT(*) FROM {table}")
            (out[shard],) = cursor.fetchone() or (0,)
        finally:
            raw.close()
    return out
