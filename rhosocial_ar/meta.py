"""What a model compiles to once: its Table, column lists and prebuilt statements.

    meta = User.__ar_meta__
    meta.table, meta.pk_names, meta.find_stmt
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from operator import itemgetter
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import SchemaValidator

from .errors import ConfigurationError, UnknownColumnError
from .fastpath import shares_snapshot
from .limits import column_checks, column_fits, fit_value

__all__ = ["ModelMeta", "pk_param"]


HOOKS = (
    "before_validate", "before_save", "before_create", "before_update", "before_destroy",
    "after_create", "after_update", "after_save", "after_destroy", "after_commit", "after_rollback",
)


def pk_param(index: int) -> str:
    # cannot clash with a column name: SQLAlchemy forbids such bind names in UPDATE
    return f"_ar_pk_{index}"


_first = itemgetter(0)   # model-fields validation gives (values, extra, fields set)


class ModelMeta:
    """Per-model compiled state; statements are built once and reused.

    ``base`` is the library's base class: a model that inherits its
    ``__init__`` or a hook method unchanged has no custom one.
    """

    def __init__(self, model: type, table: sa.Table, fields: dict[str, FieldInfo], base: type[Any]) -> None:
        self.model = model
        self.base = base
        self.table = table
        self.fields = fields
        self.names: tuple[str, ...] = tuple(c.key for c in table.c if c.key in fields)
        self.name_set = frozenset(table.c.keys())
        self.columns = tuple(table.c[n] for n in self.names)
        self.pk_names: tuple[str, ...] = tuple(c.key for c in table.primary_key.columns)
        self.lock_column: str | None = getattr(model, "__ar_lock_column__", None)
        self.soft_delete_column: str | None = getattr(model, "__ar_soft_delete_column__", None)
        self.created_column: str | None = getattr(model, "__ar_created_column__", None)
        self.updated_column: str | None = getattr(model, "__ar_updated_column__", None)
        for marker in (self.lock_column, self.soft_delete_column,
                       self.created_column, self.updated_column):
            if marker is not None and marker not in self.name_set:
                raise ConfigurationError(f"{model.__name__}: mixin column {marker!r} is missing")
        self.server_defaults = frozenset(
            c.key for c in self.columns if c.server_default is not None and not c.primary_key
        )
        # an INSERT leaves these out when they are None: autoincrement keys, server defaults
        self.defaulted_by_database = self.server_defaults | frozenset(self.pk_names)
        # columns the library itself writes during save; restored on rollback
        self.bookkeeping = tuple(dict.fromkeys(
            n for n in (*self.pk_names, self.lock_column, self.created_column,
                        self.updated_column, self.soft_delete_column) if n
        ))
        self.update_bookkeeping = tuple(
            n for n in (self.updated_column, self.lock_column) if n)
        # what a rollback puts back on the usual new record (no origin, every bookkeeping
        # column None): one shared tuple, so an INSERT keeps nothing of its own for it
        self.unsaved_state = (None, None, self.bookkeeping,
                              MappingProxyType(dict.fromkeys(self.bookkeeping)))
        # every field is a column: a record's values dict holds nothing else
        self.fields_are_columns = set(fields) == set(self.names)
        # the keys of a record holding every field in field order, which the loader keeps
        # too (to_dict() is then a copy of its values); None when the loader's order differs
        self.full_record_keys = (dict.fromkeys(fields).keys() if tuple(fields) == self.names
                                 else None)
        self._insert_keys: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._defaulted_order = tuple(n for n in self.names if n in self.defaulted_by_database)
        self.query_cache: dict[Any, Any] = {}     # Query's statements, per shape
        self.order_keys: dict[str, Any] = {}       # Query's parsed order_by() strings
        self.loaders: dict[Any, Any] = {}          # loading.py: loaders per column list, the twin
        self.shares_snapshot = shares_snapshot(model)
        # the hooks this model overrides; the others (the base's empty ones) are not even called
        self.hooks = frozenset(
            name for name in HOOKS if getattr(model, name) is not getattr(base, name)
        )
        self._adapters: dict[str, TypeAdapter[Any]] = {}
        self._fields_validator: tuple[Any, SchemaValidator | None] | None = None

    def insert_keys(self, values: dict[str, Any]) -> tuple[str, ...]:
        """The columns an INSERT of a record's ``values`` sends.

        All but those the database fills in (autoincrement keys, server
        defaults) when they are None, and any missing from ``values``.
        """
        if len(values) < len(self.fields):   # a record built without every field
            return tuple(n for n in self.names if n in values
                         and not (n in self.defaulted_by_database and values[n] is None))
        defaulted = self._defaulted_order
        omitted: tuple[str, ...]
        if len(defaulted) == 1:   # the usual: an autoincrement key (no comprehension: per save)
            omitted = defaulted if values[defaulted[0]] is None else ()
        else:
            omitted = tuple([n for n in defaulted if values[n] is None])
        keys = self._insert_keys.get(omitted)
        if keys is None:
            keys = self._insert_keys[omitted] = tuple(n for n in self.names if n not in omitted)
        return keys

    # -- checks -------------------------------------------------------------

    def column(self, name: str) -> sa.Column[Any]:
        """The column called ``name``; anything else raises ``UnknownColumnError``."""
        if not isinstance(name, str) or name not in self.name_set:
            raise UnknownColumnError(
                f"{self.model.__name__} has no column {name!r}; "
                f"columns: {', '.join(self.table.c.keys())}"
            )
        return self.table.c[name]

    def require_pk(self, action: str) -> tuple[str, ...]:
        if not self.pk_names:
            raise ConfigurationError(
                f"{self.model.__name__}: table {self.table.name!r} has no primary key; cannot {action}"
            )
        return self.pk_names

    def validate_value(self, name: str, value: Any) -> Any:
        """Validate one value for a field the way pydantic would on assignment."""
        adapter = self._adapters.get(name)
        if adapter is None:
            info = self.fields[name]
            annotation: Any = info.annotation
            adapter = self._adapters[name] = TypeAdapter(annotation)
        return adapter.validate_python(value)

    def validate_rows(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        """Validate each row as ``model_validate`` would; return each one's field values.

        Records are not built when the model's validation is only its fields'
        (see ``_fields_only``); if a row fails, the model validates them all
        again, so the error raised is exactly the one ``model_validate`` raises.
        """
        fields = self._fields_only()
        if fields is not None:
            try:
                return list(map(_first, map(fields.validate_python, rows)))
            except ValidationError:
                pass   # the model's own validation below decides, and raises its own error
        validate = self.model.__pydantic_validator__.validate_python  # type: ignore[attr-defined]
        return list(map(vars, map(validate, rows)))

    def _fields_only(self) -> SchemaValidator | None:
        """pydantic's validator of the model's fields alone, when that is all its validation does.

        A model's core schema validates the fields (a dict in, the values out),
        then builds the instance. With no custom ``__init__``, no
        ``model_post_init`` (private attributes), no model validators and no
        validator plugins, the field values are all a dict row yields.
        Rebuilt when the model's schema is (``model_rebuild``).
        """
        model: Any = self.model
        validator = model.__pydantic_validator__
        schema = model.__pydantic_core_schema__
        cached = self._fields_validator
        if cached is not None and cached[0] is schema:
            return cached[1]
        own_init = model.__init__ is not self.base.__init__   # not the base's: it may do more
        plain = (
            type(validator) is SchemaValidator
            and isinstance(schema, dict) and schema.get("type") == "model"
            and schema.get("cls") is model
            and not ((schema.get("custom_init") and own_init)
                     or schema.get("post_init") or schema.get("root_model"))
            and schema["schema"].get("type") == "model-fields"
        )
        fields = SchemaValidator(schema["schema"], schema.get("config")) if plain else None
        self._fields_validator = (schema, fields)
        return fields

    @cached_property
    def checks(self) -> tuple[tuple[str, Any], ...]:
        """(column, check) for the columns a write checks (see ``limits.py``); None: a DATETIME."""
        return tuple(column_checks(self.table).items())

    @cached_property
    def check_by_name(self) -> dict[str, Any]:
        return dict(self.checks)

    def fit(self, values: dict[str, Any], also: dict[str, Any] | None = None) -> None:
        """Refuse a value that does not fit its column; aware datetimes become naive UTC.

        ``values`` (and ``also``, the record's own values) are changed in place,
        so the record holds what the database does. Runs for every write: a
        value that fits costs one call.
        """
        for name, check in self.checks:
            value = values.get(name)
            if value is None:
                continue
            if check is not None:
                if check(value) is not None:
                    fit_value(name, check, value, self.model.__name__)   # raises
            elif getattr(value, "tzinfo", None) is not None:
                values[name] = fitted = fit_value(name, None, value, self.model.__name__)
                if also is not None:
                    also[name] = fitted

    def fit_columns(self, names: Sequence[str], columns: Sequence[list[Any]]) -> None:
        """``fit`` for rows held column by column (``columns[i]`` holds ``names[i]``); checks only.

        Aware datetimes need no change here: the column type stores them as naive UTC.
        """
        checks = self.check_by_name
        for name, column in zip(names, columns, strict=True):
            check = checks.get(name)
            if check is not None and not column_fits(check, column):
                for value in column:
                    if value is not None and check(value) is not None:
                        fit_value(name, check, value, self.model.__name__)   # raises

    @cached_property
    def column_types(self) -> dict[str, Any]:
        """Column name -> type, to type the results of raw SQL by name."""
        return {c.name: c.type for c in self.table.c}

    @cached_property
    def key_of_name(self) -> dict[str, str]:
        """Column name in SQL -> field name; they differ for ``Field(column=...)``."""
        return {c.name: c.key for c in self.table.c}

    # -- prebuilt statements ------------------------------------------------

    def pk_clause(self) -> Any:
        pks = self.require_pk("address a row by primary key")
        return sa.and_(*(self.table.c[n] == sa.bindparam(pk_param(i)) for i, n in enumerate(pks)))

    @cached_property
    def insert_stmt(self) -> sa.Insert:
        return self.table.insert()

    @cached_property
    def bulk_insert_stmt(self) -> sa.Insert:
        # inline: no RETURNING of the new keys, which bulk inserts do not report
        return self.table.insert().inline()

    @cached_property
    def find_stmt(self) -> sa.Select[Any]:
        stmt = sa.select(*self.columns).where(self.pk_clause())
        return stmt

    @cached_property
    def update_stmt(self) -> sa.Update:
        return self.table.update().where(self.pk_clause())

    @cached_property
    def locked_update_stmt(self) -> sa.Update:
        assert self.lock_column is not None
        lock = self.table.c[self.lock_column]
        return self.table.update().where(self.pk_clause(), lock == sa.bindparam("_ar_lock"))

    @cached_property
    def delete_stmt(self) -> sa.Delete:
        return self.table.delete().where(self.pk_clause())

    @cached_property
    def locked_delete_stmt(self) -> sa.Delete:
        assert self.lock_column is not None
        lock = self.table.c[self.lock_column]
        return self.table.delete().where(self.pk_clause(), lock == sa.bindparam("_ar_lock"))
