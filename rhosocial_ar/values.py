"""Column types that store a value exactly, the same on every backend.

    class Item(ActiveRecord):
        price: Decimal                 # ExactDecimal(18, 6): exact on SQLite too
        at: datetime.datetime          # UTCDateTime: aware values stored as naive UTC

        address: Address               # JSONValue: JSON (JSONB on PostgreSQL), read back as an Address
        site: HttpUrl                  # TextValue: VARCHAR(2083), read back as an HttpUrl

    bind_type(type(value))             # the type a ``where('at = ?', value)`` value is bound with

``docs/values.md`` states the rules these implement.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import uuid
from typing import Any

import pydantic
import pydantic_core
import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.engine import Dialect

from . import dialects

__all__ = ["ExactDecimal", "JSONValue", "TextValue", "UTCDateTime", "bind_type", "to_naive_utc"]

_UTC = datetime.timezone.utc
# pydantic's URL types: classes from 2.10 on, pydantic_core's Url with constraints before
URL_TYPES: tuple[type, ...] = (pydantic.AnyUrl, pydantic_core.Url, pydantic_core.MultiHostUrl)


def to_naive_utc(value: Any) -> Any:
    """An aware datetime as naive UTC (the same instant); anything else unchanged."""
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(_UTC).replace(tzinfo=None)
    return value


class UTCDateTime(sa.TypeDecorator[datetime.datetime]):
    """DATETIME with microseconds; an aware value is stored as naive UTC.

    Columns without a time zone cannot keep an offset, and each backend
    dropped it differently (SQLite and MySQL kept the wall time, PostgreSQL
    converted by the server's zone); the instant is what is kept.
    """

    impl = sa.DateTime
    cache_ok = True
    # a plain naive datetime reaches the DATETIME unchanged (fastpath/processors.py)
    naive_unchanged = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(dialects.datetime_type(dialect))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return to_naive_utc(value)

    # no process_result_value: values come back as the DATETIME gives them, and without
    # one SQLAlchemy uses the DATETIME's own result processor (none on PostgreSQL)

    @property
    def python_type(self) -> type:
        return datetime.datetime


class ExactDecimal(sa.TypeDecorator[decimal.Decimal]):
    """NUMERIC(precision, scale), stored exactly on every backend.

    SQLite's NUMERIC keeps 15 significant digits, so there the value is TEXT
    with a collation that compares by value (``dialects.DECIMAL_COLLATION``):
    ``=``, ``<``, ``ORDER BY``, ``MIN`` and ``MAX`` see numbers; arithmetic and
    ``SUM``/``AVG`` are SQLite's floating point. Elsewhere it is the plain
    NUMERIC, with no processing added. ``scale=None`` (fragment values) binds
    the value as it is.
    """

    impl = sa.Numeric
    cache_ok = True

    def __init__(self, precision: int | None = 18, scale: int | None = 6) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale
        self._quantum = decimal.Decimal(1).scaleb(-scale) if scale is not None else None

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialects.decimals_as_text(dialect):
            return dialect.type_descriptor(sa.Text(collation=dialects.DECIMAL_COLLATION))
        return dialect.type_descriptor(sa.Numeric(self.precision, self.scale, asdecimal=True))

    def bind_processor(self, dialect: Dialect) -> Any:
        if not dialects.decimals_as_text(dialect):
            return self.impl_instance.bind_processor(dialect)   # the plain NUMERIC's, unchanged
        return _decimal_text

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        if not dialects.decimals_as_text(dialect):
            return self.impl_instance.result_processor(dialect, coltype)
        quantum = self._quantum

        def process(value: Any) -> Any:
            if value is None:
                return None
            # text as stored; a number from SUM/AVG or from a table made before (NUMERIC)
            found = decimal.Decimal(value if isinstance(value, str | int) else repr(value))
            if quantum is None:
                return found
            try:   # padded to the scale, as PostgreSQL and MySQL return it
                return found.quantize(quantum)
            except decimal.InvalidOperation:   # too many digits for the context: as it is
                return found

        return process

    @property
    def python_type(self) -> type:
        return decimal.Decimal


def _decimal_text(value: Any) -> Any:
    """A number as the exact text SQLite stores; 'f': no exponent, so it reads as a number."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return repr(value)
    return str(value)


class _Typed(sa.TypeDecorator[Any]):
    """A column whose values are read back through pydantic's validation of ``annotation``.

    The loader trusts rows and does not validate them (fastpath/loading.py), so
    the column's result processor makes the value the field's type again.
    Migrations render it without the annotation (``JSONValue()``): DDL needs none.
    """

    cache_ok = True

    def __init__(self, annotation: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.annotation = annotation
        self._adapter: TypeAdapter[Any] | None = None

    @property
    def adapter(self) -> TypeAdapter[Any]:
        if self._adapter is None:   # on first use: the annotation may name a class defined later
            self._adapter = TypeAdapter(self.annotation)
        return self._adapter

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else self.adapter.validate_python(value)

    @property
    def python_type(self) -> type:
        return object


class JSONValue(_Typed):
    """JSON (JSONB on PostgreSQL) holding a nested model, a dict or a list, typed by ``annotation``.

    Written as pydantic's JSON dump of the value (a dict given for a model is
    validated first), read back through the field's validation: ``list[Address]``
    comes back as Address records, a tuple as a tuple.
    """

    impl = sa.JSON
    cache_ok = True

    def __init__(self, annotation: Any = Any) -> None:
        super().__init__(annotation, none_as_null=True)

    def __repr__(self) -> str:
        return "JSONValue()"

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(dialects.json_type(dialect))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        adapter = self.adapter
        return adapter.dump_python(adapter.validate_python(value), mode="json")


class TextValue(_Typed):
    """VARCHAR(length) holding a string-like value that is not a ``str`` (a pydantic URL)."""

    impl = sa.String
    cache_ok = True

    def __init__(self, length: int | None = None, annotation: Any = str) -> None:
        super().__init__(annotation, length)
        self.length = length

    def __repr__(self) -> str:
        return f"TextValue(length={self.length!r})"

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return value if value is None or isinstance(value, str) else str(value)


class _EnumValue(sa.TypeDecorator[Any]):
    """A fragment's enum member, bound as its value (what an Enum column holds)."""

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return value.value if isinstance(value, enum.Enum) else value


@functools.lru_cache(maxsize=256)
def bind_type(kind: type) -> Any:
    """The type a SQL fragment binds a value of Python type ``kind`` with, or None (as it is).

    The same conversion the keyword form's column applies: datetimes as the
    column stores them, decimals exactly, UUIDs in the column's form.
    """
    if issubclass(kind, bool | int | float | str | bytes):
        return None          # the driver's own binding is the column's
    if issubclass(kind, datetime.datetime):
        return UTCDateTime()
    if issubclass(kind, datetime.date):
        return sa.Date()
    if issubclass(kind, datetime.time):
        return dialects.precise_time()
    if issubclass(kind, decimal.Decimal):
        return ExactDecimal(None, None)
    if issubclass(kind, uuid.UUID):
        return sa.Uuid()
    if issubclass(kind, enum.Enum):
        return _EnumValue()
    if issubclass(kind, URL_TYPES):
        return TextValue(None, kind)
    if issubclass(kind, pydantic.BaseModel):
        return JSONValue(kind)
    return None
