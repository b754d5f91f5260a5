"""ActiveRecord: pydantic models that are rows of a Core table.

    class User(IntegerPKMixin, TimestampMixin, ActiveRecord):
        __table_name__ = 'users'
        id: int | None = None
        username: str
        email: str

    u = User(username='ann', email='ann@x.io'); u.save()     # INSERT
    u.email = 'a@x.io'; u.save()                             # UPDATE users SET email=...
    User.find(u.id); User.find_by(username='ann'); User.where(...).all()
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from pydantic.fields import FieldInfo

from . import aio, bulk, bulk_records, fastpath, registry, routing, sharding, statements
from .errors import ConfigurationError, QueryError, RecordNotFound, StaleObjectError
from .fastpath import STATE_SLOTS, loader
from .meta import ModelMeta, pk_param
from .mixins import utc_now
from .query import Query
from .relation import Relation, relations_of
from .schema import build_table, check_adopted_table, default_table_name
from .transaction import Transaction, atomic, current_frame

__all__ = ["ActiveRecord"]

T = TypeVar("T", bound="ActiveRecord")
_MISSING = object()
_set = object.__setattr__   # past pydantic's __setattr__, for the library's own slots
_HOOKS_INSIDE = frozenset({"after_create", "after_save"})   # run inside an insert's transaction
_UNSET_MEANS_NONE = frozenset((*STATE_SLOTS, "__pydantic_extra__", "__pydantic_private__"))
_PK_0 = pk_param(0)
_NOTHING_KEPT: dict[str, Any] = {}



class ActiveRecord(BaseModel):
    """Base class of every model; a subclass with fields compiles to a table."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    __abstract__: ClassVar[bool] = True
    __connection__: ClassVar[str] = "default"
    __read_connection__: ClassVar[str | None] = None
    # seconds after this context wrote during which its reads skip the replica
    __read_your_writes__: ClassVar[float] = 5.0
    # a sharded model: its shards' connection names and the column that picks one (sharding.py)
    __shards__: ClassVar[Sequence[str] | None] = None
    __shard_key__: ClassVar[str | None] = None
    __ar_meta__: ClassVar[ModelMeta]
    __table__: ClassVar[sa.Table]
    c: ClassVar[Any]

    # The library's per-record state, in slots beside pydantic's own (no dict per
    # record, nothing more for the garbage collector to follow): '_ar_saved' holds
    # the column values as last read from or written to the database (None while
    # the record is new; often the very dict in __dict__, see loading.py),
    # '_ar_origin' the connection it came from, '_ar_relations' the loaded relations.
    __slots__ = STATE_SLOTS
    if TYPE_CHECKING:   # the slots' types; annotations at run time would make them pydantic's
        _ar_saved: dict[str, Any] | None
        _ar_origin: str | None
        _ar_relations: dict[str, Any] | None

    def __init__(self, /, **data: Any) -> None:
        # what BaseModel.__init__ does, without a second call frame: it runs per record
        self.__pydantic_validator__.validate_python(data, self_instance=self)
        _set_saved(self, None)
        _set_origin(self, None)
        _set_relations(self, None)

    if not TYPE_CHECKING:   # hidden from type checkers, so that `record.nmae` is an error
        def __getattr__(self, name: str) -> Any:
            # slots left unset: the library's on records pydantic built without __init__
            # (model_validate, model_construct), pydantic's empty ones on loaded records
            if name in _UNSET_MEANS_NONE:
                _set(self, name, None)
                return None
            return super().__getattr__(name)

    def __copy__(self: T) -> T:
        copied = super().__copy__()
        for name in STATE_SLOTS:
            _set(copied, name, getattr(self, name))
        if self._ar_relations is not None:
            _set(copied, "_ar_relations", dict(self._ar_relations))
        return copied

    def __deepcopy__(self: T, memo: dict[int, Any] | None = None) -> T:
        copied = super().__deepcopy__(memo)
        for name in STATE_SLOTS:
            _set(copied, name, copy.deepcopy(getattr(self, name), memo))
        return copied

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state["_ar_state"] = tuple(getattr(self, name) for name in STATE_SLOTS)
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        kept = state.pop("_ar_state", (None,) * len(STATE_SLOTS))
        super().__setstate__(state)
        for name, value in zip(STATE_SLOTS, kept, strict=True):
            _set(self, name, value)

    def _ar_own_values(self) -> dict[str, Any]:
        """``__dict__`` for a change in place, no longer shared with the snapshot."""
        values = self.__dict__
        if values is self._ar_saved:
            values = dict(values)
            _set(self, "__dict__", values)
        return values

    # -- class creation -----------------------------------------------------

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _check_reserved_names(cls)
        if cls.__dict__.get("__abstract__", False):
            return
        fields: dict[str, FieldInfo] = dict(cls.model_fields)
        adopted = cls.__dict__.get("__table__")
        if isinstance(adopted, sa.Table):
            check_adopted_table(cls.__name__, adopted, fields)
            table = adopted
            registry.register_table(cls.__connection__, table)
        else:
            name = (
                cls.__dict__.get("__table_name__")
                or cls.__dict__.get("__tablename__")
                or getattr(cls, "__table_name__", None)
                or getattr(cls, "__tablename__", None)
                or default_table_name(cls.__name__)
            )
            metadata = registry.metadata_for(cls.__connection__)
            if name in metadata.tables:
                # a second model over the same table: keep the first one's for create_all
                metadata = sa.MetaData()
            trailing = frozenset(
                getattr(cls, marker, None) for marker in (
                    "__ar_created_column__", "__ar_updated_column__",
                    "__ar_soft_delete_column__", "__ar_lock_column__",
                )
            ) - {None}
            table = build_table(name, fields, metadata, trailing)  # type: ignore[arg-type]
        cls.__table__ = table
        cls.c = table.c
        cls.__ar_meta__ = ModelMeta(cls, table, fields, base=ActiveRecord)
        annotations = cls.__dict__.get("__annotations__", {})
        for name, value in cls.__dict__.items():
            if isinstance(value, Relation):
                value.bind(cls, name, annotations.get(name))
        registry.register_model(cls)
        if cls.__shards__ is not None:
            sharding.declare(cls)

    # -- loading ------------------------------------------------------------

    @classmethod
    def _ar_load_many(cls: type[T], names: Sequence[str], rows: Iterable[Sequence[Any]],
                      origin: str | None) -> list[T]:
        """Build records from trusted database rows without re-validating them."""
        return loader(cls, names)(rows, origin)

    # -- class-level queries --------------------------------------------------

    @classmethod
    def query(cls: type[T]) -> Query[T]:
        """A query over every row (the default scope applied)."""
        return Query(cls)

    find_all = query

    @classmethod
    def where(cls: type[T], *conditions: Any, **columns: Any) -> Query[T]:
        query = Query(cls)
        query._add_where(conditions, columns)   # on the new query itself: no copy
        return query

    @classmethod
    def order_by(cls: type[T], *keys: Any) -> Query[T]:
        query = Query(cls)
        query._add_order(keys)
        return query

    @classmethod
    def select(cls: type[T], *names: str, **computed: Any) -> Query[T]:
        return Query(cls).select(*names, **computed)

    @classmethod
    def annotate(cls: type[T], **computed: Any) -> Query[T]:
        return Query(cls).annotate(**computed)

    @classmethod
    def group_by(cls: type[T], *keys: Any) -> Query[T]:
        return Query(cls).group_by(*keys)

    @classmethod
    def limit(cls: type[T], count: int) -> Query[T]:
        return Query(cls).limit(count)

    @classmethod
    def offset(cls: type[T], count: int) -> Query[T]:
        return Query(cls).offset(count)

    @classmethod
    def using(cls: type[T], name: str) -> Query[T]:
        return Query(cls).using(name)

    @classmethod
    def with_(cls: type[T], *paths: str | tuple[str, Callable[[Any], Any]]) -> Query[T]:
        return Query(cls).with_(*paths)

    @classmethod
    def join(cls: type[T], *args: Any) -> Query[T]:
        return Query(cls).join(*args)

    @classmethod
    def left_join(cls: type[T], *args: Any) -> Query[T]:
        return Query(cls).left_join(*args)

    @classmethod
    def all_rows(cls: type[T]) -> Query[T]:
        """Every row, said on purpose: ``Model.all_rows().delete()`` (a bare one raises)."""
        return Query(cls).all_rows()

    @classmethod
    def with_deleted(cls: type[T]) -> Query[T]:
        return Query(cls).with_deleted()

    @classmethod
    def only_deleted(cls: type[T]) -> Query[T]:
        return Query(cls).only_deleted()

    @classmethod
    def all(cls: type[T]) -> list[T]:
        return Query(cls).all()

    @classmethod
    def first(cls: type[T]) -> T | None:
        return Query(cls).first()

    @classmethod
    def last(cls: type[T]) -> T | None:
        return Query(cls).last()

    @classmethod
    def count(cls, name: str | None = None, *, distinct: bool = False) -> int:
        return Query(cls).count(name, distinct=distinct)

    @classmethod
    def aggregate(cls, **named: Any) -> dict[str, Any]:
        return Query(cls).aggregate(**named)

    @classmethod
    def exists(cls) -> bool:
        return Query(cls).exists()

    @classmethod
    def pluck(cls, *names: Any) -> list[Any]:
        return Query(cls).pluck(*names)

    @classmethod
    def sum(cls, name: str) -> Any:
        return Query(cls).sum(name)

    @classmethod
    def avg(cls, name: str) -> Any:
        return Query(cls).avg(name)

    @classmethod
    def min(cls, name: str) -> Any:
        return Query(cls).min(name)

    @classmethod
    def max(cls, name: str) -> Any:
        return Query(cls).max(name)

    @classmethod
    def batch(cls: type[T], size: int = 1000) -> Iterator[list[T]]:
        return Query(cls).batch(size)

    @classmethod
    def find(cls: type[T], *pk: Any) -> T:
        """The record with this primary key; raises ``RecordNotFound``."""
        meta = cls.__ar_meta__
        pks = meta.require_pk("find")
        if len(pk) != len(pks):
            raise QueryError(f"find() takes {len(pks)} primary key value(s): {', '.join(pks)}")
        if meta.soft_delete_column or cls.__shards__ is not None:
            return Query(cls).find(*pk)
        params = {_PK_0: pk[0]} if len(pk) == 1 else {
            pk_param(i): value for i, value in enumerate(pk)}
        found: list[T] = routing.read(cls, None, fastpath.fetch_records, meta.find_stmt, params, cls,
                                      meta.names)[0]
        if not found:
            key = ", ".join(f"{n}={v!r}" for n, v in zip(pks, pk, strict=True))
            raise RecordNotFound(f"{cls.__name__} with {key} not found")
        return found[0]

    @classmethod
    def find_by(cls: type[T], **columns: Any) -> T | None:
        """The first record matching ``column=value`` pairs, or None."""
        return Query(cls).where(**columns).first()

    @classmethod
    def raw_query(cls: type[T], sql: str, params: Any = None) -> list[T]:
        """Records from your own SELECT; ``?`` or ``:name`` placeholders, values bound."""
        if isinstance(params, dict):
            clause: Any = sa.text(sql)
            bound = params
        else:
            from .query import _fragment

            values = () if params is None else tuple(params) if isinstance(
                params, list | tuple) else (params,)
            names = tuple(f"raw_{i}" for i in range(len(values)))
            # typed by the values, as in where('... ?', value) (query.py)
            kinds = tuple(type(v) for v in values)
            clause, bound = _fragment(sql, names, kinds), dict(zip(names, values, strict=True))
        meta = cls.__ar_meta__
        typed = clause.columns(**meta.column_types)  # text() results are untyped otherwise

        def fetch(sa_conn: Any, _: str) -> tuple[list[str], list[tuple[Any, ...]]]:
            result = sa_conn.execute(typed, bound)
            by_name = meta.key_of_name    # the result's columns by SQL name, the fields by key
            names = [n for n in result.keys() if n in by_name]  # noqa: SIM118 (a Result)
            return [by_name[n] for n in names], [tuple(m[n] for n in names)
                                                 for m in result.mappings()]

        (keys, rows), origin = routing.read(cls, None, fetch)
        return cls._ar_load_many(keys, rows, origin)

    @classmethod
    def from_statement(cls: type[T], statement: Any) -> list[T]:
        """Records from a Core SELECT (a CTE, window functions, a union), checked against the
        model's columns; other labelled columns are readable on each record."""
        return statements.from_statement(cls, statement)

    @classmethod
    def create(cls: type[T], **values: Any) -> T:
        """Validate, insert and return a new record."""
        record = cls(**values)
        record.save()
        return record

    @classmethod
    def on_shard(cls: type[T], name: str) -> Query[T]:
        """A query on the shard ``name`` of a sharded model (``using()``, checked)."""
        return Query(cls).using(sharding.check_shard(cls, name))

    @classmethod
    def using_connection(cls, name: str) -> AbstractContextManager[None]:
        """A block in which every operation of this model goes to ``name``."""
        return routing.using_connection(cls, name)

    @classmethod
    def transaction(cls, isolation_level: str | None = None, *,
                    across_shards: bool = False) -> Transaction:
        """A transaction on this model's connection; ``across_shards``: one two-phase unit over
        every shard of a sharded model (``two_phase(*shards)``)."""
        if across_shards:
            return sharding.across_shards(cls, isolation_level)  # type: ignore[no-any-return]
        return Transaction(routing.resolve(cls), isolation_level=isolation_level)

    # -- introspection --------------------------------------------------------

    @classmethod
    def primary_key(cls) -> str | tuple[str, ...]:
        """The primary key's field name; a tuple of names for a composite key."""
        pks = cls.__ar_meta__.require_pk("name its primary key")
        return pks[0] if len(pks) == 1 else pks

    @classmethod
    def relations(cls) -> dict[str, Relation[Any]]:
        """The model's relations by name, in declaration order (a new dict each call)."""
        return relations_of(cls)

    @classmethod
    def relation(cls, name: str) -> Relation[Any]:
        """The relation called ``name``; raises ``QueryError`` naming the ones there are."""
        found = relations_of(cls)
        if name not in found:
            raise QueryError(f"{cls.__name__} has no relation {name!r}; "
                             f"relations: {', '.join(found) or 'none'}")
        return found[name]

    @classmethod
    def create_table(cls, checkfirst: bool = True) -> None:
        """CREATE TABLE on the model's connection, or on every shard (tests and demos; use
        migrations in prod)."""
        for conn in sharding.connections(cls):
            cls.__table__.create(aio.checked_engine(conn), checkfirst=checkfirst)

    @classmethod
    def drop_table(cls, checkfirst: bool = True) -> None:
        for conn in sharding.connections(cls):
            cls.__table__.drop(aio.checked_engine(conn), checkfirst=checkfirst)

    # -- upserts and bulk inserts ------------------------------------------

    @classmethod
    def bulk_insert(cls, rows: Iterable[Any], batch_size: int = 1000) -> int:
        """Insert many rows (dicts or records) without hooks; returns the row count."""
        if cls.__shards__ is not None:     # each shard its rows
            return sharding.by_shard(cls, rows, lambda part: bulk.insert_many(cls, part, batch_size))
        return bulk.insert_many(cls, rows, batch_size)

    @classmethod
    def insert_or_update(cls, data: Any, conflict_keys: Sequence[str],
                         update_columns: Sequence[str] | None = None) -> int:
        """Insert a row, or update it where ``conflict_keys`` match: one statement."""
        if cls.__shards__ is not None:
            return sharding.by_shard(cls, [data], lambda part: bulk.upsert_one(
                cls, part[0], conflict_keys, update_columns))
        return bulk.upsert_one(cls, data, conflict_keys, update_columns)

    @classmethod
    def bulk_insert_or_update(cls, rows: Iterable[Any], conflict_keys: Sequence[str],
                              batch_size: int = 1000,
                              update_columns: Sequence[str] | None = None) -> int:
        """Upsert many rows, one ``INSERT ... ON CONFLICT`` statement per batch."""
        if cls.__shards__ is not None:
            return sharding.by_shard(cls, rows, lambda part: bulk.upsert_many(
                cls, part, conflict_keys, batch_size, update_columns))
        return bulk.upsert_many(cls, rows, conflict_keys, batch_size, update_columns)

    @classmethod
    def bulk_update(cls: type[T], records: Iterable[T], fields: Sequence[str],
                    batch_size: int = 1000) -> int:
        """Write ``fields`` of loaded records, one UPDATE per batch, in one transaction."""
        return bulk_records.bulk_update(cls, records, fields, batch_size)

    @classmethod
    def bulk_delete(cls: type[T], records: Iterable[T], batch_size: int = 1000) -> int:
        """Delete loaded records (soft-delete models mark them), one statement per batch."""
        return bulk_records.bulk_delete(cls, records, batch_size)

    # -- records --------------------------------------------------------------

    @property
    def is_new_record(self) -> bool:
        """True until the record has been inserted (or after it was deleted)."""
        return self._ar_saved is None

    def to_dict(self) -> dict[str, Any]:
        """The field values loaded on this record, by name."""
        values = self.__dict__
        cls = type(self)
        # the usual record holds every field, in order (pydantic's or the loader's): a copy
        if values.keys() == cls.__ar_meta__.full_record_keys:
            return dict(values)
        return {n: values[n] for n in cls.model_fields if n in values}

    def _ar_connection(self) -> Any:
        """Where this record writes: a block's override, where it came from, or its model's."""
        cls = type(self)
        if cls.__shards__ is not None:
            return routing.get_connection(sharding.record_shard(self))
        return routing.get_connection(
            routing.override_for(cls) or self._ar_origin or cls.__connection__)

    def changed_columns(self) -> dict[str, Any]:
        """Columns whose values differ from what the database last held."""
        saved = self._ar_saved
        values = self.__dict__
        meta = type(self).__ar_meta__
        if saved is None:
            return {n: values[n] for n in meta.names if n in values}
        if values is saved:
            return {}
        get = saved.get
        if meta.fields_are_columns:
            changes = {}
            for name, value in values.items():   # a loop, not a comprehension: runs per save
                old = get(name, _MISSING)
                if old is not value and old != value:
                    changes[name] = value
            return changes
        return {
            n: values[n] for n in meta.names
            if n in values and (old := get(n, _MISSING)) is not values[n] and old != values[n]
        }

    def save(self) -> int:
        """Insert or update (changed columns only); returns the rows written."""
        hooks = type(self).__ar_meta__.hooks
        if not hooks:
            return self._ar_insert() if self._ar_saved is None else self._ar_update()
        if "before_validate" in hooks:
            self.before_validate()
        if "before_save" in hooks:
            self.before_save()
        if self._ar_saved is None:
            if "before_create" in hooks:
                self.before_create()
            return self._ar_insert()
        if "before_update" in hooks:
            self.before_update()
        return self._ar_update()

    def _ar_insert(self) -> int:
        # one flat method: it runs for every record created
        meta = type(self).__ar_meta__
        conn = self._ar_connection()
        frame = current_frame(conn.name)
        if frame is None or conn.read_only:
            # a transaction of its own (read-only: refused); just the INSERT when no
            # hook runs inside it and no server default is read back after it
            with atomic(conn, not meta.server_defaults and not meta.hooks & _HOOKS_INSIDE):
                return self._ar_insert()
        frame.wrote = True
        values = self.__dict__
        meta.fit(values)   # refuses a value that does not fit, before anything is sent
        state = meta.unsaved_state if self._ar_origin is None else None
        for name in meta.bookkeeping:
            if values.get(name, _MISSING) is not None:
                state = None
                break
        if state is None:   # what a rollback puts back
            state = self._ar_state()
        frame.records.append((self, state))   # frame.enlist(), inline
        if meta.created_column or meta.updated_column or meta.lock_column:
            self._ar_stamp_new(meta)
        inserted = fastpath.insert(frame.sa_conn, meta.insert_stmt, values,
                                    meta.insert_keys(values), meta.pk_names)
        if inserted is not None:
            if len(inserted) == 1:
                if inserted[0] is not None:
                    values[meta.pk_names[0]] = inserted[0]
            else:
                for pk, value in zip(meta.pk_names, inserted, strict=False):
                    if value is not None:
                        values[pk] = value
        if meta.server_defaults and any(values.get(n) is None for n in meta.server_defaults):
            self._ar_fetch_server_defaults(frame.sa_conn)
        # the record is the row now (a copy when assignments change __dict__ in place)
        _set_saved(self, values if meta.shares_snapshot else dict(values))
        _set_origin(self, conn.name)
        hooks = meta.hooks
        if hooks:
            if "after_create" in hooks:
                self.after_create()
            if "after_save" in hooks:
                self.after_save()
        return 1

    def _ar_stamp_new(self, meta: ModelMeta) -> None:
        values = self.__dict__
        now = utc_now()
        for stamp in (meta.created_column, meta.updated_column):
            if stamp and values.get(stamp) is None:
                values[stamp] = now
        if meta.lock_column and values.get(meta.lock_column) is None:
            values[meta.lock_column] = 0

    def _ar_update(self, only: str | None = None, before: Any = None,
                hooks: tuple[str, ...] = ("after_update", "after_save")) -> int:
        """UPDATE the changed columns (or just ``only``) under the lock, then run ``hooks``."""
        # one flat method: it runs for every record saved
        cls = type(self)
        meta = cls.__ar_meta__
        saved: dict[str, Any] = self._ar_saved  # type: ignore[assignment]  # saved: not None
        if only is None:
            changes = self.changed_columns()
            if not changes:
                return 0
        else:
            changes = {only: self.__dict__[only]}
        meta.fit(changes, self.__dict__)   # as in an insert
        conn = self._ar_connection()
        frame = current_frame(conn.name)
        if frame is None or conn.read_only:
            with atomic(conn):          # a transaction of its own (read-only: refused)
                return self._ar_update(only, before, hooks)
        pks = meta.pk_names
        if len(pks) == 1 and saved.get(pks[0]) is not None:   # _ar_pk_params(), its common case
            params = {_PK_0: saved[pks[0]]}
        else:
            params = self._ar_pk_params(saved, "update")
        if before is None:   # an UPDATE never writes the key; only these in place
            before = (self._ar_state(meta.update_bookkeeping) if meta.update_bookkeeping
                      else (saved, self._ar_origin, (), _NOTHING_KEPT))
        stmt = meta.update_stmt
        if meta.updated_column or meta.lock_column:
            values = self._ar_own_values()
            if only is None and meta.updated_column and meta.updated_column not in changes:
                changes[meta.updated_column] = values[meta.updated_column] = utc_now()
            if meta.lock_column:
                stmt = meta.locked_update_stmt
                params["_ar_lock"] = version = saved[meta.lock_column]
                changes[meta.lock_column] = values[meta.lock_column] = version + 1
        params.update(changes)
        frame.wrote = True
        frame.enlist(self, before)
        count = fastpath.write(frame.sa_conn, stmt, params)
        if meta.lock_column and count == 0:
            raise StaleObjectError(
                f"{cls.__name__} {self._ar_pk_text(saved, meta.pk_names)} was changed or "
                f"deleted by someone else since it was loaded (version {saved[meta.lock_column]})"
            )
        if only is None:   # the record is the row now, as after an insert
            values = self.__dict__
            _set_saved(self, values if meta.shares_snapshot else dict(values))
            _set_origin(self, conn.name)
        else:   # a new dict: the state kept for a rollback holds the old one
            _set_saved(self, {**saved, **changes})
        if meta.hooks:
            for hook in hooks:
                if hook in meta.hooks:
                    getattr(self, hook)()
        return count

    def _ar_fetch_server_defaults(self, sa_conn: Any) -> None:
        """Read back the columns the database filled in (after an INSERT without them)."""
        meta = type(self).__ar_meta__
        params = {pk_param(i): self.__dict__.get(n) for i, n in enumerate(meta.pk_names)}
        row = sa_conn.execute(meta.find_stmt, params).first()
        if row is not None:
            for name, value in zip(meta.names, row, strict=True):
                if name in meta.server_defaults:
                    self.__dict__[name] = value

    def _ar_pk_params(self, saved: dict[str, Any], action: str) -> dict[str, Any]:
        pks = type(self).__ar_meta__.require_pk(action)
        if len(pks) == 1:
            key = saved.get(pks[0])
            if key is not None:
                return {_PK_0: key}
        elif all(saved.get(n) is not None for n in pks):
            return {pk_param(i): saved[n] for i, n in enumerate(pks)}
        raise QueryError(f"cannot {action} a record loaded without its primary key {pks}")

    @staticmethod
    def _ar_pk_text(saved: dict[str, Any], pks: Sequence[str]) -> str:
        return ", ".join(f"{n}={saved[n]!r}" for n in pks)

    def _ar_state(self, names: tuple[str, ...] | None = None) -> tuple[Any, ...]:
        """What a rollback must put back: persisted state and the bookkeeping columns
        ``names`` (by default all) that the write may change in place."""
        values = self.__dict__
        if names is None:
            names = type(self).__ar_meta__.bookkeeping
        kept = {n: values[n] for n in names if n in values} if names else _NOTHING_KEPT
        return self._ar_saved, self._ar_origin, names, kept

    def _ar_restore(self, state: tuple[Any, ...]) -> None:
        saved, origin, names, kept = state
        _set(self, "_ar_saved", saved)
        _set(self, "_ar_origin", origin)
        if not names:
            return
        values = self._ar_own_values()
        for name in names:
            if name in kept:
                values[name] = kept[name]
            else:
                values.pop(name, None)

    def delete(self) -> int:
        """Delete the row (soft-delete models set ``deleted_at``); returns the rows deleted."""
        cls = type(self)
        meta = cls.__ar_meta__
        if self.is_new_record:
            raise QueryError(f"cannot delete a {cls.__name__} that was never saved")
        self.before_destroy()
        if meta.soft_delete_column:
            # only deleted_at is written; other pending changes stay pending
            before = self._ar_state()
            self._ar_own_values()[meta.soft_delete_column] = utc_now()
            return self._ar_update(only=meta.soft_delete_column, before=before,
                                hooks=("after_destroy",))
        return self._ar_hard_delete()

    def hard_delete(self) -> int:
        """Delete the row for real, also on soft-delete models."""
        if self.is_new_record:
            raise QueryError(f"cannot delete a {type(self).__name__} that was never saved")
        self.before_destroy()
        return self._ar_hard_delete()

    def _ar_hard_delete(self) -> int:
        cls = type(self)
        meta = cls.__ar_meta__
        saved: dict[str, Any] = self._ar_saved  # type: ignore[assignment]  # saved: not None
        params = self._ar_pk_params(saved, "delete")
        before = self._ar_state()
        stmt = meta.delete_stmt
        if meta.lock_column:
            stmt = meta.locked_delete_stmt
            params["_ar_lock"] = saved[meta.lock_column]
        conn = self._ar_connection()
        with atomic(conn) as frame:
            frame.enlist(self, before)
            count = fastpath.write(frame.sa_conn, stmt, params)
            if meta.lock_column and count == 0:
                raise StaleObjectError(
                    f"{cls.__name__} {self._ar_pk_text(saved, meta.pk_names)} was changed or "
                    f"deleted by someone else since it was loaded"
                )
            _set(self, "_ar_saved", None)
            self.after_destroy()
        return int(count)

    def refresh(self: T) -> T:
        """Reload every column from the database; raises ``RecordNotFound`` if gone."""
        cls = type(self)
        meta = cls.__ar_meta__
        saved = self._ar_saved
        if saved is None:
            raise QueryError(f"cannot refresh a {cls.__name__} that was never saved")
        pks = meta.require_pk("refresh")
        key = tuple(saved[n] for n in pks)
        origin = self._ar_connection().name
        query = Query(cls).using(origin).with_deleted()
        fresh = query.find(*key)
        self._ar_own_values().update(fresh.__dict__)
        _set(self, "_ar_saved", fresh._ar_saved)
        return self

    # -- awaitable forms: each runs its sync twin in the asyncio bridge (aio.py) --

    @classmethod
    async def aall(cls: type[T]) -> list[T]:
        return await aio.run(cls.all)

    @classmethod
    async def afirst(cls: type[T]) -> T | None:
        return await aio.run(cls.first)

    @classmethod
    async def alast(cls: type[T]) -> T | None:
        return await aio.run(cls.last)

    @classmethod
    async def acount(cls, name: str | None = None, *, distinct: bool = False) -> int:
        return await aio.run(cls.count, name, distinct=distinct)

    @classmethod
    async def aaggregate(cls, **named: Any) -> dict[str, Any]:
        return await aio.run(cls.aggregate, **named)

    @classmethod
    async def aexists(cls) -> bool:
        return await aio.run(cls.exists)

    @classmethod
    async def apluck(cls, *names: Any) -> list[Any]:
        return await aio.run(cls.pluck, *names)

    @classmethod
    async def asum(cls, name: str) -> Any:
        return await aio.run(cls.sum, name)

    @classmethod
    async def aavg(cls, name: str) -> Any:
        return await aio.run(cls.avg, name)

    @classmethod
    async def amin(cls, name: str) -> Any:
        return await aio.run(cls.min, name)

    @classmethod
    async def amax(cls, name: str) -> Any:
        return await aio.run(cls.max, name)

    @classmethod
    def abatch(cls: type[T], size: int = 1000) -> AsyncIterator[list[T]]:
        return aio.iterate(cls.batch(size))

    @classmethod
    async def afind(cls: type[T], *pk: Any) -> T:
        return await aio.run(cls.find, *pk)

    @classmethod
    async def afind_by(cls: type[T], **columns: Any) -> T | None:
        return await aio.run(cls.find_by, **columns)

    @classmethod
    async def araw_query(cls: type[T], sql: str, params: Any = None) -> list[T]:
        return await aio.run(cls.raw_query, sql, params)

    @classmethod
    async def afrom_statement(cls: type[T], statement: Any) -> list[T]:
        return await aio.run(cls.from_statement, statement)

    @classmethod
    async def acreate(cls: type[T], **values: Any) -> T:
        return await aio.run(cls.create, **values)

    @classmethod
    def atransaction(cls, isolation_level: str | None = None, *,
                     across_shards: bool = False) -> Transaction:
        """``async with User.atransaction():`` (a ``Transaction`` is both kinds of block)."""
        return cls.transaction(isolation_level, across_shards=across_shards)

    @classmethod
    async def acreate_table(cls, checkfirst: bool = True) -> None:
        await aio.run(cls.create_table, checkfirst)

    @classmethod
    async def adrop_table(cls, checkfirst: bool = True) -> None:
        await aio.run(cls.drop_table, checkfirst)

    @classmethod
    async def abulk_insert(cls, rows: Iterable[Any], batch_size: int = 1000) -> int:
        return await aio.run(cls.bulk_insert, rows, batch_size)

    @classmethod
    async def ainsert_or_update(cls, data: Any, conflict_keys: Sequence[str],
                                update_columns: Sequence[str] | None = None) -> int:
        return await aio.run(cls.insert_or_update, data, conflict_keys, update_columns)

    @classmethod
    async def abulk_insert_or_update(cls, rows: Iterable[Any], conflict_keys: Sequence[str],
                                     batch_size: int = 1000,
                                     update_columns: Sequence[str] | None = None) -> int:
        return await aio.run(cls.bulk_insert_or_update, rows, conflict_keys, batch_size,
                             update_columns)

    @classmethod
    async def abulk_update(cls: type[T], records: Iterable[T], fields: Sequence[str],
                           batch_size: int = 1000) -> int:
        return await aio.run(cls.bulk_update, records, fields, batch_size)

    @classmethod
    async def abulk_delete(cls: type[T], records: Iterable[T], batch_size: int = 1000) -> int:
        return await aio.run(cls.bulk_delete, records, batch_size)

    async def asave(self) -> int:
        return await aio.run(self.save)

    async def adelete(self) -> int:
        return await aio.run(self.delete)

    async def ahard_delete(self) -> int:
        return await aio.run(self.hard_delete)

    async def arefresh(self: T) -> T:
        return await aio.run(self.refresh)

    # -- hooks (override in models) -------------------------------------------

    def before_validate(self) -> None: ...
    def before_save(self) -> None: ...
    def before_create(self) -> None: ...
    def before_update(self) -> None: ...
    def before_destroy(self) -> None: ...
    def after_create(self) -> None: ...
    def after_update(self) -> None: ...
    def after_save(self) -> None: ...
    def after_destroy(self) -> None: ...
    def after_commit(self) -> None: ...
    def after_rollback(self) -> None: ...


def _check_reserved_names(cls: type) -> None:
    """The library keeps its private names on a model under ``_ar_``; a model may not reuse one."""
    if cls.__module__.startswith("rhosocial_ar."):   # the library's own bases (tenants.py)
        return
    taken = [n for n in (*vars(cls), *getattr(cls, "__private_attributes__", ()))
             if n.startswith("_ar_")]
    if taken:
        raise ConfigurationError(
            f"{cls.__name__}: names starting with '_ar_' belong to rhosocial_ar "
            f"({', '.join(sorted(set(taken)))}); rename them"
        )


# the slots' own setters: faster than object.__setattr__ on the per-record paths
_set_saved = vars(ActiveRecord)["_ar_saved"].__set__
_set_origin = vars(ActiveRecord)["_ar_origin"].__set__
_set_relations = vars(ActiveRecord)["_ar_relations"].__set__
