"""Bind values converted for the driver, exactly as SQLAlchemy's processors would, but faster.

    convert = bind_processor(column.type, dialect, process)      # one value
    convert_all = column_processor(column.type, dialect, process) # a whole column at once

SQLite's DATETIME in its default storage format is converted in C for plain
naive datetimes (``datetime.isoformat``); every other value, type, format
or TypeDecorator goes through SQLAlchemy's own processor.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from itertools import repeat
from operator import attrgetter, is_
from typing import Any

from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect

__all__ = ["bind_processor", "column_processor"]

# SQLAlchemy's default storage format of SQLite DATETIME, which for a naive
# datetime is exactly datetime.isoformat(' ', 'microseconds')
_SQLITE_DATETIME_FORMAT = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)
_tzinfo = attrgetter("tzinfo")


def _is_default_sqlite_datetime(type_: Any, dialect: Dialect) -> bool:
    if dialect.name != "sqlite":
        return False
    impl = type_.dialect_impl(dialect)
    # a TypeDecorator that hands a plain naive datetime to its DATETIME unchanged
    # (rhosocial_ar.values.UTCDateTime converts only aware ones)
    if getattr(impl, "naive_unchanged", False):
        impl = impl.impl_instance
    return type(impl) is sqlite.DATETIME and impl._storage_format == _SQLITE_DATETIME_FORMAT


def bind_processor(type_: Any, dialect: Dialect,
                   process: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """Convert one bind value exactly as ``process``, SQLAlchemy's processor, would, but faster.

    SQLite's DATETIME in its default format is done in C for plain naive
    datetimes; every other value, type, format or TypeDecorator goes through ``process``.
    """
    if process is not None and _is_default_sqlite_datetime(type_, dialect):
        return _sqlite_datetime(process)
    return process


def column_processor(type_: Any, dialect: Dialect,
                     process: Callable[[Any], Any] | None) -> Callable[[list[Any]], list[Any]] | None:
    """Convert a whole column of bind values exactly as ``process`` would (see ``bind_processor``)."""
    if process is None:
        return None
    if _is_default_sqlite_datetime(type_, dialect):
        return _sqlite_datetimes(process)
    return lambda values: list(map(process, values))


def _sqlite_datetime(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    plain = datetime.datetime
    isoformat = plain.isoformat

    def one(value: Any) -> Any:
        if type(value) is plain and value.tzinfo is None:
            return isoformat(value, " ", "microseconds")
        return process(value)   # None, a date, a subclass, an aware datetime (its offset dropped)

    return one


def _sqlite_datetimes(process: Callable[[Any], Any]) -> Callable[[list[Any]], list[Any]]:
    plain = datetime.datetime
    isoformat = plain.isoformat
    one = _sqlite_datetime(process)

    def convert(values: list[Any]) -> list[Any]:
        if (all(map(is_, map(type, values), repeat(plain)))
                and all(map(is_, map(_tzinfo, values), repeat(None)))):
            return list(map(isoformat, values, repeat(" "), repeat("microseconds")))
        return list(map(one, values))

    return convert


