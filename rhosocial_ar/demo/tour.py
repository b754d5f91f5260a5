"""The demo's tour of the API over the Chinook store, once ``databases.prepare`` loaded it.

    $ rhosocial-ar demo                       # two SQLite files in ./demo_data
    $ python -c "from rhosocial_ar.cli import main; main(['demo', '--dir', '/tmp/ar-demo'])"

Each ``tour_*`` function prints a few lines and checks what it printed
against the data; the per-artist sales summary is computed from both
databases in Python (no SQL statement can span two connections) and written
with upserts.
"""

from __future__ import annotations

import argparse
import datetime
import time
from collections import defaultdict
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from .. import ConnectionManager, RecordNotFound, get_connection, migrate, transfer
from ..errors import CommandError
from .databases import SIDES, find_chinook, packaged, prepare, show
from .models import (
    SHARDS,
    Album,
    ArchivedLine,
    Artist,
    ArtistSales,
    Customer,
    Genre,
    Invoice,
    InvoiceLine,
    ShardedInvoice,
    Track,
)
from .shards import tour_shards

__all__ = ["run"]


class _Undo(Exception):
    """Raised inside a savepoint to roll it back on purpose."""


# -- the tour -------------------------------------------------------------------

def tour_queries() -> None:
    """where/order_by/limit, to_sql, find/find_by, pluck, count/sum, select and batch."""
    rock = Genre.find_by(name="Rock")
    assert rock is not None
    longest = Track.where(genre_id=rock.genre_id).order_by("-milliseconds").limit(3)
    show("where/order/limit", "longest Rock tracks: " + "; ".join(
        f"{t.name} {t.milliseconds // 60000}:{t.milliseconds // 1000 % 60:02d}"
        for t in longest.all()))
    dialect = get_connection("catalog").dialect.name
    show(f"to_sql ({dialect})", " ".join(longest.to_sql().split()))

    zeppelin = Artist.find_by(name="Led Zeppelin")
    assert zeppelin is not None
    show("find_by / find", f"Led Zeppelin is artist {zeppelin.artist_id}; "
         f"find(1) -> {Artist.find(1).name}")
    try:
        Artist.find(99999)
    except RecordNotFound as exc:
        show("find (missing)", f"RecordNotFound: {exc}")

    genres = Genre.order_by("genre_id").pluck("name")
    show("pluck", f"{len(genres)} genres: {', '.join(genres[:5])}, ...")
    long_tracks = Track.where("milliseconds > ?", 10 * 60000).count()
    show("count / sum", f"{Track.count()} tracks, {Track.where(genre_id=rock.genre_id).count()} "
         f"Rock, {long_tracks} over 10 min; {Invoice.count()} invoices total "
         f"{Invoice.sum('total')}")
    pricey = Track.where(Track.c.unit_price > Decimal("1")).count()
    show("column expression", f"{pricey} tracks cost more than 1.00 (videos)")

    brazil = Customer.select("first_name", "last_name", "city").where(country="Brazil")
    first = brazil.first()
    assert first is not None
    show("select (partial)", f"{brazil.count()} customers in Brazil, first loaded as "
         f"{first.to_dict()}")

    sizes, quantity = [], 0
    for batch in InvoiceLine.batch(1000):
        sizes.append(len(batch))
        quantity += sum(line.quantity for line in batch)
    show("batch(1000)", f"invoice_lines in {len(sizes)} batches {sizes}, {quantity} items sold")


def track_and_artist(line: InvoiceLine) -> tuple[Track, Artist]:
    """A line's track and its album's artist, across the two databases (Chinook has every link)."""
    track = line.track()
    album = track.album() if track is not None else None
    artist = album.artist() if album is not None else None
    if track is None or artist is None:
        raise CommandError(f"invoice line {line.invoice_line_id} has no track, album or artist")
    return track, artist


def tour_relations() -> None:
    """Eager-load invoices -> lines -> tracks -> albums -> artists across both databases."""
    seen: dict[str, int] = defaultdict(int)

    def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        seen[conn.engine.url.database or "?"] += statement.lstrip().upper().startswith("SELECT")

    engines = [get_connection(name).engine for name in ("catalog", "sales")]
    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", count)
    try:
        invoices = Invoice.where(customer_id=[1, 2, 3]).order_by("invoice_id") \
            .with_("lines", "lines.track", "lines.track.album", "lines.track.album.artist").all()
        lines = [line for invoice in invoices for line in invoice.lines()]
        artists = {track_and_artist(line)[1].name for line in lines}
        queries = sum(seen.values())
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", count)
    show("with_ (eager)", f"{len(invoices)} invoices, {len(lines)} lines, their tracks, albums "
         f"and {len(artists)} artists in {queries} queries (not {1 + len(invoices) + 3 * len(lines)})")
    line = lines[0]
    track, artist = track_and_artist(line)
    show("relations", f"line {line.invoice_line_id} (sales) -> track {track.name!r} "
         f"(catalog) -> {artist.name}")
    if queries != 5:
        raise CommandError(f"eager loading took {queries} queries, expected 5")


def artist_summary(track_ids: list[int] | None = None) -> list[dict[str, Any]]:
    """Sales per artist: invoice lines (sales) joined in Python to tracks and albums (catalog)."""
    album_artist = dict(Album.pluck("album_id", "artist_id"))
    track_query = Track.query() if track_ids is None else Track.where(track_id=track_ids)
    track_artist = {t: album_artist[a] for t, a in track_query.pluck("track_id", "album_id")}
    names = dict(Artist.pluck("artist_id", "name"))
    sold: dict[int, int] = defaultdict(int)
    revenue: dict[int, Decimal] = defaultdict(Decimal)
    lines = InvoiceLine.query() if track_ids is None else InvoiceLine.where(track_id=track_ids)
    for batch in lines.batch(1000):
        for line in batch:
            artist = track_artist[line.track_id]
            sold[artist] += line.quantity
            revenue[artist] += line.unit_price * line.quantity
    return [{"artist_id": a, "name": names[a], "tracks_sold": sold[a], "revenue": revenue[a]}
            for a in sorted(sold)]


def tour_summary() -> None:
    """Compute the per-artist summary from both databases and upsert it twice."""
    started = time.perf_counter()
    rows = artist_summary()
    written = ArtistSales.bulk_insert_or_update(rows, conflict_keys=["artist_id"])
    top = ArtistSales.order_by("-revenue").first()
    assert top is not None
    show("bulk_insert_or_update", f"{written} artists with sales in "
         f"{time.perf_counter() - started:.2f} s; top: {top.name} {top.revenue} "
         f"({top.tracks_sold} tracks)")
    again = ArtistSales.bulk_insert_or_update(rows, conflict_keys=["artist_id"])
    show("rerun", f"{again} rows upserted again, still {ArtistSales.count()} rows")


def tour_transaction() -> int:
    """A new sale in a transaction on 'sales', with a savepoint that is rolled back.

    Returns the artist whose tracks were sold.
    """
    customer = Customer.find(1)
    acdc = Artist.find_by(name="AC/DC")
    assert acdc is not None
    albums = Album.where(artist_id=acdc.artist_id).pluck("album_id")
    tracks = Track.where(album_id=albums).order_by("track_id").limit(2).all()
    latest = Invoice.order_by("-invoice_date").first()
    assert latest is not None
    with Invoice.transaction():
        invoice = Invoice.create(
            invoice_id=Invoice.query().max("invoice_id") + 1,
            customer_id=customer.customer_id,
            invoice_date=latest.invoice_date + datetime.timedelta(days=1),
            billing_city=customer.city, billing_country=customer.country,
            total=sum((t.unit_price for t in tracks), Decimal(0)),
        )
        next_line = InvoiceLine.query().max("invoice_line_id") + 1
        InvoiceLine.bulk_insert([
            {"invoice_line_id": next_line + i, "invoice_id": invoice.invoice_id,
             "track_id": t.track_id, "unit_price": t.unit_price, "quantity": 1}
            for i, t in enumerate(tracks)
        ])
        who = f"{customer.first_name} {customer.last_name}"
        show("transaction (sales)", f"invoice {invoice.invoice_id} for {who}: "
             f"{len(tracks)} AC/DC tracks, {invoice.total}")
        mine = Invoice.where(customer_id=customer.customer_id)
        try:
            with Invoice.transaction():     # nested: a SAVEPOINT
                older = mine.where("invoice_id < ?", invoice.invoice_id).pluck("invoice_id")
                InvoiceLine.where(invoice_id=older).delete()
                deleted = Invoice.where(invoice_id=older).delete()
                left = mine.count()
                raise _Undo
        except _Undo:
            pass
        show("savepoint rolled back", f"deleted {deleted} older invoices of {who} "
             f"({left} left), rolled back: {mine.count()} again")
    show("committed", f"{Invoice.count()} invoices total {Invoice.sum('total')}")
    return acdc.artist_id


def tour_upsert(artist_id: int) -> None:
    """Refresh one artist's summary row with insert_or_update; check it against invoices."""
    before = ArtistSales.find(artist_id)
    track_ids = Track.where(album_id=Album.where(artist_id=artist_id).pluck("album_id")) \
        .pluck("track_id")
    (row,) = artist_summary(track_ids)
    ArtistSales.insert_or_update(row, conflict_keys=["artist_id"])
    after = ArtistSales.find(artist_id)
    show("insert_or_update", f"{after.name}: {before.tracks_sold} -> {after.tracks_sold} "
         f"tracks sold, {before.revenue} -> {after.revenue}; still {ArtistSales.count()} rows")
    revenue, total = ArtistSales.sum("revenue"), Invoice.sum("total")
    verdict = "match" if revenue == total else "DIFFER"
    show("check", f"artist_sales revenue {revenue}, invoices total {total}: {verdict}")
    if revenue != total:
        raise CommandError(f"the summary does not add up: {revenue} != {total}")


def tour_transfer(progress: bool) -> None:
    """Move the lines of the first two years' invoices from 'sales' to an archive on 'catalog'."""
    cutoff = datetime.datetime(Invoice.query().min("invoice_date").year + 2, 1, 1)
    old = Invoice.where("invoice_date < ?", cutoff).pluck("invoice_id")
    lines = InvoiceLine.where(invoice_id=old)
    before = lines.sum("quantity")
    result = transfer(lines, ArchivedLine, batch_size=200, delete_source=True,
                      progress=progress)
    show("transfer (move)", f"{result.rows} lines of {len(old)} invoices before "
         f"{cutoff:%Y-%m-%d}, "
         f"{result.batches} batches, strategy {result.strategy}, "
         f"{result.rows_per_second:,.0f} rows/s")
    kept, moved = InvoiceLine.where(invoice_id=old).count(), ArchivedLine.count()
    show("check", f"left in sales {kept}, in the archive {moved}, quantity "
         f"{before} = {ArchivedLine.sum('quantity')}")
    if kept or moved != result.rows or ArchivedLine.sum("quantity") != before:
        raise CommandError("the archive does not match what was moved")


def run(args: argparse.Namespace) -> int:
    """Run the whole tour; returns the exit code 0 (failures raise)."""
    started = time.perf_counter()
    chinook = find_chinook(args.chinook)
    migrations = packaged("migrations")
    try:
        rows = prepare(args, chinook, migrations)
        print("queries")
        tour_queries()
        print("relations across the two databases")
        tour_relations()
        print("upserts: a per-artist summary in 'sales' computed from both databases")
        tour_summary()
        print("a sale: a transaction on 'sales' with a savepoint")
        tour_upsert(tour_transaction())
        print("transfer: each batch atomic across both databases")
        tour_transfer(progress=not args.no_progress)
        print("shards: the invoices split by customer over two more databases")
        tour_shards(args)
        if args.drop:
            ShardedInvoice.drop_table()
            for name in SIDES:
                migrate.downgrade(name, "base", migrations)
        kept = "tables dropped" if args.drop else "tables kept"
        print(f"done: {rows} rows loaded, {time.perf_counter() - started:.2f} s, {kept}")
        return 0
    finally:
        for name in {"catalog", "sales", "chinook", *SHARDS} & set(ConnectionManager.names()):
            get_connection(name).dispose()   # close files and server sessions
