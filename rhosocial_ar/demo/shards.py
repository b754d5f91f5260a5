"""The demo's sharded step: the invoices split by customer over two more databases.

    tour_shards(args)       # configure 'sales_s0', 'sales_s1', copy the invoices, read them back

By default the two shards are two more SQLite files beside the others
(``sales_s0.db``, ``sales_s1.db``, recreated on every run); ``--catalog-url``
puts the first on the catalogue's database and ``--sales-url`` the second on
the sales' one, so two servers given to the demo hold one shard each. Every
figure is checked against the unsharded ``invoices`` table on 'sales'.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from .. import ConnectionManager, Transaction, get_connection, shard_of
from ..errors import CommandError
from .databases import show
from .models import SHARDS, Invoice, ShardedInvoice

__all__ = ["HOSTS", "configure", "tour_shards"]

HOSTS = dict(zip(SHARDS, ("catalog", "sales"), strict=True))   # whose --*-url a shard follows
COLUMNS = ("invoice_id", "customer_id", "invoice_date", "billing_country", "total")


def configure(args: argparse.Namespace) -> dict[str, str]:
    """Configure the two shard connections (fresh SQLite files unless a side's URL is given);
    return the URLs shown."""
    configs = {}
    for shard, side in HOSTS.items():
        url = getattr(args, f"{side}_url")
        if url is None:
            path = args.dir / f"{shard}.db"
            if shard in ConnectionManager.names():
                get_connection(shard).dispose()     # close the file of a previous run first
            path.unlink(missing_ok=True)
            url = f"sqlite:///{path}"
        configs[shard] = {"url": url}
    ConnectionManager.configure(configs)
    return {name: get_connection(name).engine.url.render_as_string(hide_password=True)
            for name in SHARDS}


@contextmanager
def counting_selects() -> Iterator[dict[str, int]]:
    """SELECTs sent to each shard inside the block."""
    seen = dict.fromkeys(SHARDS, 0)
    listeners: list[tuple[Any, Callable[..., None]]] = []
    for name in SHARDS:
        def count(conn: Any, cursor: Any, statement: str, *rest: Any, shard: str = name) -> None:
            seen[shard] += statement.lstrip().upper().startswith("SELECT")
        engine = get_connection(name).engine
        sa.event.listen(engine, "before_cursor_execute", count)
        listeners.append((engine, count))
    try:
        yield seen
    finally:
        for engine, count in listeners:
            sa.event.remove(engine, "before_cursor_execute", count)


def load() -> dict[str, int]:
    """Copy the invoices from 'sales', each shard its customers' rows in one transaction."""
    ShardedInvoice.drop_table()        # a previous run's, on a database the demo migrated
    ShardedInvoice.create_table()      # on both shards
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in SHARDS}
    for row in Invoice.order_by("invoice_id").pluck(*COLUMNS):
        parts[shard_of(ShardedInvoice, row[1])].append(dict(zip(COLUMNS, row, strict=True)))
    for name, rows in parts.items():
        # one shard per block: a write to both without two-phase commit is refused
        with ShardedInvoice.using_connection(name), Transaction(name):
            ShardedInvoice.bulk_insert(rows)
    return {name: len(rows) for name, rows in parts.items()}


def _cents(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _check(what: str, sharded: Any, plain: Any) -> str:
    if sharded != plain:
        raise CommandError(f"the shards' {what} {sharded!r} differs from the invoices' {plain!r}")
    return "match"


def tour_reads() -> None:
    """A key-routed read, a fan-out ordered and limited read and fan-out aggregates."""
    customer = 7
    home = shard_of(ShardedInvoice, customer)
    with counting_selects() as seen:
        mine = ShardedInvoice.where(customer_id=customer).order_by("invoice_date").all()
    total = sum((i.total for i in mine), Decimal(0))
    plain = Invoice.where(customer_id=customer).order_by("invoice_date").pluck("invoice_id")
    queries = ", ".join(f"{n} on {name}" for name, n in seen.items())
    show("key-routed read", f"customer {customer} -> {home}: {len(mine)} invoices total {total} "
         f"({queries}): {_check('invoices', [i.invoice_id for i in mine], plain)}")
    if seen[home] != 1 or sum(seen.values()) != 1:
        raise CommandError(f"a read by customer_id ran {seen}, expected one query on {home}")

    with counting_selects() as seen:
        top = ShardedInvoice.order_by("-total", "invoice_id").limit(5).pluck("invoice_id", "total")
    plain_top = Invoice.order_by("-total", "invoice_id").limit(5).pluck("invoice_id", "total")
    show("fan-out order/limit", "largest: " + ", ".join(f"{i} {t}" for i, t in top)
         + f" (each shard its top 5, merged; {sum(seen.values())} queries): "
         + _check("top 5", top, plain_top))

    count, total = ShardedInvoice.count(), ShardedInvoice.sum("total")
    average = _cents(ShardedInvoice.avg("total"))
    first, last = ShardedInvoice.min("invoice_date"), ShardedInvoice.max("invoice_date")
    expected = (Invoice.count(), _cents(Invoice.sum("total")), _cents(Invoice.avg("total")),
                Invoice.min("invoice_date"), Invoice.max("invoice_date"))
    show("fan-out aggregates", f"{count} invoices total {total}, avg {average} (sums and counts "
         f"of both shards), {first:%Y-%m-%d} to {last:%Y-%m-%d}: "
         + _check("aggregates", (count, _cents(total), average, first, last), expected))


def tour_shards(args: argparse.Namespace) -> None:
    """The sharded step: configure, load, then read by key and across both shards."""
    for name, url in configure(args).items():
        show(name, url)
    per_shard = load()
    show("bulk_insert per shard", ", ".join(f"{name} {n}" for name, n in per_shard.items())
         + " invoices by hash of customer_id; on_shard counts "
         + ", ".join(str(ShardedInvoice.on_shard(name).count()) for name in SHARDS))
    tour_reads()
