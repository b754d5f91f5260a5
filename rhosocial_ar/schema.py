"""Compile a pydantic model's fields to a SQLAlchemy Core ``Table``.

    class Post(ActiveRecord):
        id: int | None = Field(None, primary_key=True)
        title: str = Field(max_length=200, index=True)
        body: str = Field(sa_type=Text)

    Post.__table__     # Table('posts', ...) with id, title VARCHAR(200), body TEXT

``Field`` is pydantic's ``Field`` plus column options; options prefixed
``sa_`` are handed to SQLAlchemy unchanged.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import re
import types
import typing
import uuid
from dataclasses import dataclass, field
from typing import Any

import annotated_types
import pydantic
import sqlalchemy as sa
from pydantic import Field as PydanticField
from pydantic.fields import FieldInfo
from pydantic.networks import UrlConstraints

from . import dialects
from .errors import ConfigurationError
from .fastpath.columns import ModelColumn
from .values import URL_TYPES, ExactDecimal, JSONValue, TextValue, UTCDateTime

__all__ = ["ColumnSpec", "Field", "build_table", "default_table_name"]

DEFAULT_STRING_LENGTH = 255
# the longest address email-validator accepts (RFC 5321's path limit less its brackets)
EMAIL_LENGTH = 254
# HttpUrl's own limit (the longest URL old browsers took); other URL types get it too
URL_LENGTH = 2083
# collections stored as one JSON document
_JSON_ORIGINS = (dict, list, tuple, set, frozenset)


@dataclass(frozen=True)
class ColumnSpec:
    """Column options carried in a pydantic field's metadata."""

    primary_key: bool = False
    index: bool = False
    unique: bool = False
    nullable: bool | None = None
    foreign_key: str | None = None
    autoincrement: bool | str = "auto"
    sa_type: Any = None
    sa_column_kwargs: dict[str, Any] = field(default_factory=dict)
    column: str | None = None      # the column's name in the database, when not the field's

    def __hash__(self) -> int:  # metadata objects must be hashable for pydantic
        return id(self)


def Field(  # noqa: N802 - mirrors pydantic.Field
    default: Any = ...,
    *,
    primary_key: bool = False,
    index: bool = False,
    unique: bool = False,
    nullable: bool | None = None,
    foreign_key: str | None = None,
    autoincrement: bool | str = "auto",
    sa_type: Any = None,
    sa_column_kwargs: dict[str, Any] | None = None,
    column: str | None = None,
    **pydantic_kwargs: Any,
) -> Any:
    """pydantic's ``Field`` with the column options of the model's table.

    ``column='email_address'``: the column's name in SQL when it is not the field's.
    """
    info: FieldInfo = PydanticField(default, **pydantic_kwargs)
    info.metadata.append(
        ColumnSpec(
            primary_key=primary_key,
            index=index,
            unique=unique,
            nullable=nullable,
            foreign_key=foreign_key,
            autoincrement=autoincrement,
            sa_type=sa_type,
            sa_column_kwargs=dict(sa_column_kwargs or {}),
            column=column,
        )
    )
    return info


_SCALAR_TYPES: list[tuple[type, Any]] = [
    # bool before int: bool is a subclass of int
    (bool, sa.Boolean),
    (int, sa.Integer),
    (float, sa.Float),
    (decimal.Decimal, sa.Numeric),
    (datetime.datetime, UTCDateTime()),
    (datetime.date, sa.Date),
    (datetime.time, dialects.precise_time()),
    (datetime.timedelta, sa.Interval),
    (bytes, sa.LargeBinary),
    (uuid.UUID, sa.Uuid),
]


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """Return (inner type, whether None is allowed)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) == 1:
            return _unwrap_optional(args[0])[0], optional
        return annotation, optional
    if origin is typing.Annotated:
        return _unwrap_optional(typing.get_args(annotation)[0])
    return annotation, False


def _constraints(annotation: Any, info: FieldInfo) -> list[Any]:
    """The field's constraints, with those of an ``Annotated`` inside ``| None``.

    Pydantic moves an outer ``Annotated``'s metadata into the field, but
    ``Annotated[Decimal, Field(max_digits=30)] | None`` keeps it in the
    annotation (the spelling pydantic 2.4 needs for constraints on an
    optional value).
    """
    found = list(info.metadata)
    pending = [annotation]
    while pending:
        current = pending.pop()
        origin = typing.get_origin(current)
        if origin is typing.Union or origin is types.UnionType:
            pending.extend(typing.get_args(current))
        elif origin is typing.Annotated:
            inner, *extras = typing.get_args(current)
            pending.append(inner)
            for extra in extras:
                found.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
    return found


def _max_length(items: list[Any]) -> int | None:
    for item in items:
        if isinstance(item, annotated_types.MaxLen):
            return int(item.max_length)
    return None


def _url_length(items: list[Any]) -> int:
    """``Field(max_length=)``, else the URL type's own limit (pydantic < 2.10: UrlConstraints), else 2083."""
    for item in items:
        if isinstance(item, annotated_types.MaxLen | UrlConstraints) and item.max_length is not None:
            return int(item.max_length)
    return URL_LENGTH


def sa_type_for(name: str, annotation: Any, info: FieldInfo) -> Any:
    """Map a field's Python type to a SQLAlchemy column type."""
    inner, _ = _unwrap_optional(annotation)
    origin = typing.get_origin(inner) or inner
    if origin is typing.Literal:
        values = typing.get_args(inner)
        if all(isinstance(v, str) for v in values):
            return sa.String(max(len(v) for v in values))
    if isinstance(origin, type):
        if issubclass(origin, enum.Enum):
            return sa.Enum(origin, values_callable=lambda e: [m.value for m in e])
        if issubclass(origin, str):
            return sa.String(_max_length(_constraints(annotation, info)) or DEFAULT_STRING_LENGTH)
        if origin is pydantic.EmailStr:
            return sa.String(_max_length(_constraints(annotation, info)) or EMAIL_LENGTH)
        if issubclass(origin, URL_TYPES):
            return TextValue(_url_length(_constraints(annotation, info)), inner)
        if issubclass(origin, (pydantic.BaseModel, *_JSON_ORIGINS)):
            return JSONValue(inner)
        for python_type, column_type in _SCALAR_TYPES:
            if issubclass(origin, python_type):
                if column_type is sa.Numeric:
                    return _numeric(_constraints(annotation, info))
                return column_type
    raise ConfigurationError(
        f"field {name!r}: no column type for {annotation!r}; pass Field(sa_type=...)"
    )


def _numeric(items: list[Any]) -> ExactDecimal:
    digits = places = None
    for item in items:
        digits = getattr(item, "max_digits", digits)
        places = getattr(item, "decimal_places", places)
    return ExactDecimal(digits or 18, places if places is not None else 6)


def _spec(info: FieldInfo) -> ColumnSpec:
    for item in info.metadata:
        if isinstance(item, ColumnSpec):
            return item
    return ColumnSpec()


def column_for(name: str, annotation: Any, info: FieldInfo) -> sa.Column[Any]:
    """Build the Core ``Column`` for one model field."""
    spec = _spec(info)
    _, optional = _unwrap_optional(annotation)
    column_type = spec.sa_type if spec.sa_type is not None else sa_type_for(name, annotation, info)
    # the Column's key is the field's name: the library and Python use it, SQL the column's name
    args: list[Any] = [spec.column or name, column_type]
    if spec.foreign_key:
        args.append(sa.ForeignKey(spec.foreign_key))
    kwargs: dict[str, Any] = {
        "primary_key": spec.primary_key,
        "nullable": spec.nullable if spec.nullable is not None else optional and not spec.primary_key,
        "index": spec.index or None,
        "unique": spec.unique or None,
        "key": name,
    }
    if spec.primary_key:
        kwargs["autoincrement"] = spec.autoincrement
    kwargs.update(spec.sa_column_kwargs)
    return ModelColumn(*args, **kwargs)


def default_table_name(class_name: str) -> str:
    """``UserProfile`` -> ``user_profiles`` (snake case, naive English plural)."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()
    if snake.endswith("y") and not snake.endswith(("ay", "ey", "oy", "uy")):
        return snake[:-1] + "ies"
    if snake.endswith(("s", "x", "z", "ch", "sh")):
        return snake + "es"
    return snake + "s"


def build_table(
    table_name: str,
    fields: dict[str, FieldInfo],
    metadata: sa.MetaData,
    trailing: frozenset[str] = frozenset(),
) -> sa.Table:
    """Create the Core ``Table`` for a model's fields in ``metadata``.

    Without a field marked ``primary_key``, a field named ``id`` is the key
    (the ActiveRecord convention). Columns are ordered key first, then the
    model's fields, then the ``trailing`` ones (the mixins' bookkeeping).
    """
    columns = [column_for(name, info.annotation, info) for name, info in fields.items()]
    if not any(c.primary_key for c in columns):
        for column in columns:
            if column.key == "id":
                column.primary_key = True
                column.nullable = False
                column.autoincrement = "auto"
    columns.sort(key=lambda c: 0 if c.primary_key else 2 if c.key in trailing else 1)
    return sa.Table(table_name, metadata, *columns)


def check_adopted_table(model_name: str, table: sa.Table, fields: dict[str, FieldInfo]) -> None:
    """Every field of a model that adopts a ``Table`` must be one of its columns."""
    missing = [name for name in fields if name not in table.c]
    if missing:
        raise ConfigurationError(
            f"{model_name}: fields {missing} are not columns of table {table.name!r} "
            f"(columns: {list(table.c.keys())})"
        )
