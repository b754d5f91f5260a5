"""The demo's models: the Chinook store's catalogue on 'catalog', its sales on 'sales'.

    from rhosocial_ar.demo.models import Track, InvoiceLine
    InvoiceLine.find(1).track()          # a track in the *other* database
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any, ClassVar

from .. import ActiveRecord, BelongsTo, Field, HasMany

__all__ = ["ALL_MODELS", "CATALOG", "SALES", "SHARDS", "Album", "ArchivedLine", "Artist",
           "ArtistSales", "Customer", "Genre", "Invoice", "InvoiceLine", "MediaType",
           "ShardedInvoice", "Track"]


def money(**kwargs: Any) -> Any:
    """A NUMERIC(10,2) field for amounts of money."""
    return Field(max_digits=10, decimal_places=2, **kwargs)


def key() -> Any:
    """A primary key whose values come from the source (no auto-increment)."""
    return Field(primary_key=True, autoincrement=False)


# -- the catalogue, on the 'catalog' connection ---------------------------------

class Artist(ActiveRecord):
    __table_name__ = "artists"
    __connection__ = "catalog"
    __chinook__: ClassVar[str] = "Artist"
    artist_id: int = key()
    name: str | None = Field(None, max_length=120)
    albums: ClassVar[HasMany[Album]] = HasMany(foreign_key="artist_id", inverse_of="artist")


class Album(ActiveRecord):
    __table_name__ = "albums"
    __connection__ = "catalog"
    __chinook__: ClassVar[str] = "Album"
    album_id: int = key()
    title: str = Field(max_length=160)
    artist_id: int = Field(index=True)
    artist: ClassVar[BelongsTo[Artist]] = BelongsTo(foreign_key="artist_id", inverse_of="albums")


class Genre(ActiveRecord):
    __table_name__ = "genres"
    __connection__ = "catalog"
    __chinook__: ClassVar[str] = "Genre"
    genre_id: int = key()
    name: str | None = Field(None, max_length=120)


class MediaType(ActiveRecord):
    __table_name__ = "media_types"
    __connection__ = "catalog"
    __chinook__: ClassVar[str] = "MediaType"
    media_type_id: int = key()
    name: str | None = Field(None, max_length=120)


class Track(ActiveRecord):
    __table_name__ = "tracks"
    __connection__ = "catalog"
    __chinook__: ClassVar[str] = "Track"
    track_id: int = key()
    name: str = Field(max_length=200)
    album_id: int | None = Field(None, index=True)
    media_type_id: int
    genre_id: int | None = Field(None, index=True)
    composer: str | None = Field(None, max_length=220)
    milliseconds: int
    bytes: int | None = None
    unit_price: Decimal = money()
    album: ClassVar[BelongsTo[Album]] = BelongsTo(foreign_key="album_id")


# -- the sales, on the 'sales' connection ---------------------------------------

class Customer(ActiveRecord):
    __table_name__ = "customers"
    __connection__ = "sales"
    __chinook__: ClassVar[str] = "Customer"
    customer_id: int = key()
    first_name: str = Field(max_length=40)
    last_name: str = Field(max_length=20)
    company: str | None = Field(None, max_length=80)
    city: str | None = Field(None, max_length=40)
    country: str | None = Field(None, max_length=40)
    email: str = Field(max_length=60)


class Invoice(ActiveRecord):
    __table_name__ = "invoices"
    __connection__ = "sales"
    __chinook__: ClassVar[str] = "Invoice"
    invoice_id: int = key()
    customer_id: int = Field(index=True)
    invoice_date: datetime.datetime
    billing_city: str | None = Field(None, max_length=40)
    billing_country: str | None = Field(None, max_length=40)
    total: Decimal = money()
    lines: ClassVar[HasMany[InvoiceLine]] = HasMany(foreign_key="invoice_id")


class InvoiceLine(ActiveRecord):
    __table_name__ = "invoice_lines"
    __connection__ = "sales"
    __chinook__: ClassVar[str] = "InvoiceLine"
    invoice_line_id: int = key()
    invoice_id: int = Field(index=True)
    track_id: int = Field(index=True)     # a track in the *other* database
    unit_price: Decimal = money()
    quantity: int
    track: ClassVar[BelongsTo[Track]] = BelongsTo(foreign_key="track_id")   # across databases


class ArtistSales(ActiveRecord):
    """Per-artist sales, computed from both databases; refreshed by upserts."""

    __table_name__ = "artist_sales"
    __connection__ = "sales"
    artist_id: int = key()
    name: str | None = Field(None, max_length=120)
    tracks_sold: int
    revenue: Decimal = Field(max_digits=12, decimal_places=2)


class ArchivedLine(ActiveRecord):
    """Invoice lines moved out of 'sales' by the demo's transfer (cold storage)."""

    __table_name__ = "invoice_line_archive"
    __connection__ = "catalog"
    invoice_line_id: int = key()
    invoice_id: int = Field(index=True)
    track_id: int
    unit_price: Decimal = money()
    quantity: int


# -- the sharded step: invoices split by customer over two more connections -----------

SHARDS = ["sales_s0", "sales_s1"]


class ShardedInvoice(ActiveRecord):
    """The invoices again, each on the shard its customer_id hashes to (tour_shards).

    Not among ALL_MODELS: its table is made by create_table() on both shards,
    not by the 'catalog' or 'sales' migrations.
    """

    __table_name__ = "sharded_invoices"
    __shards__ = SHARDS
    __shard_key__ = "customer_id"
    invoice_id: int = key()
    customer_id: int = Field(index=True)
    invoice_date: datetime.datetime
    billing_country: str | None = Field(None, max_length=40)
    total: Decimal = money()


CATALOG: list[type[ActiveRecord]] = [Artist, Album, Genre, MediaType, Track]
SALES: list[type[ActiveRecord]] = [Customer, Invoice, InvoiceLine]
ALL_MODELS: list[type[ActiveRecord]] = [*CATALOG, *SALES, ArtistSales, ArchivedLine]

