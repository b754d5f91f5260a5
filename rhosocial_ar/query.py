"""The chainable, immutable query.

    q = User.where(status='active').where('age > ?', 18).order_by('-created_at').limit(10)
    q.all(); q.first(); q.count(); q.pluck('email'); q.to_sql()
    for batch in User.where(status='active').batch(1000): ...

Column names given as strings are checked against the table; values are
always bound parameters. Statements are built once per query shape and
reused, so a query built the same way twice costs no SQLAlchemy work.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.util import find_tables

from . import execution, registry, routing
from .errors import CrossConnectionError, QueryError, RecordNotFound
from .loading import loader
from .meta import ModelMeta
from .mixins import utc_now
from .relation import eager_load, relations_of
from .transaction import atomic

if TYPE_CHECKING:
    from .model import ActiveRecord

__all__ = ["Query"]

M = TypeVar("M", bound="ActiveRecord")

_QUERY_CACHE_LIMIT = 512
_DIRECTIONS = {"asc": sa.asc, "desc": sa.desc}
_SCOPES = ("live", "all", "deleted")


def _fragment(sql: str, values: Sequence[Any], prefix: str) -> tuple[sa.TextClause, dict[str, Any]]:
    """Turn ``'age > ? AND name = ?'`` into a text clause with bound parameters."""
    parts = sql.replace(":", "\\:").split("?")
    if len(parts) - 1 != len(values):
        raise QueryError(
            f"where({sql!r}) has {len(parts) - 1} '?' placeholders but {len(values)} values"
        )
    names = [f"{prefix}_{i}" for i in range(len(values))]
    text = parts[0] + "".join(f":{n}{part}" for n, part in zip(names, parts[1:], strict=True))
    return sa.text(text).bindparams(*(sa.bindparam(n) for n in names)), dict(
        zip(names, values, strict=True)
    )


class Query(Generic[M]):
    """An immutable query over one model; every method returns a new query."""

    __slots__ = ("model", "_using", "_wheres", "_order", "_limit", "_offset", "_select", "_scope",
                 "_with", "_joins", "_lock")

    def __init__(self, model: type[M]) -> None:
        self.model = model
        self._using: str | None = None
        self._wheres: tuple[tuple[Any, ...], ...] = ()
        self._order: tuple[tuple[Any, ...], ...] = ()
        self._limit: int | None = None
        self._offset: int | None = None
        self._select: tuple[str, ...] | None = None
        self._scope = "live"
        self._with: tuple[str, ...] = ()
        self._joins: tuple[str, ...] = ()
        self._lock = False

    @property
    def _meta(self) -> ModelMeta:
        return self.model.__ar_meta__

    def _copy(self, **changes: Any) -> Query[M]:
        # spelled out: this runs for every step of every query chain
        new = Query.__new__(Query)
        new.model = self.model
        new._using = self._using
        new._wheres = self._wheres
        new._order = self._order
        new._limit = self._limit
        new._offset = self._offset
        new._select = self._select
        new._scope = self._scope
        new._with = self._with
        new._joins = self._joins
        new._lock = self._lock
        for slot, value in changes.items():
            setattr(new, slot, value)
        return new

    # -- building -----------------------------------------------------------

    def where(self, *conditions: Any, **columns: Any) -> Query[M]:
        """Filter by ``column=value``, a SQL fragment with ``?`` and values, or expressions."""
        meta = self._meta
        wheres = list(self._wheres)
        if conditions and isinstance(conditions[0], str):
            sql, values = conditions[0], conditions[1:]
            if sql.count("?") != len(values):         # checked now, not when it runs
                raise QueryError(f"where({sql!r}) has {sql.count('?')} '?' placeholders but "
                                 f"{len(values)} values")
            wheres.append(("sql", sql, tuple(values)))
        else:
            for cond in conditions:
                if not isinstance(cond, ColumnElement):
                    raise QueryError(
                        f"where() takes column=value, a SQL string with '?' or a SQLAlchemy "
                        f"expression, not {cond!r}"
                    )
                wheres.append(("expr", cond))
        for name, value in columns.items():
            meta.column(name)
            if value is None:
                wheres.append(("null", name))
            elif isinstance(value, list | tuple | set | frozenset):
                wheres.append(("in", name, tuple(value)))
            else:
                wheres.append(("eq", name, value))
        return self._copy(_wheres=tuple(wheres))

    def order_by(self, *keys: Any) -> Query[M]:
        """Order by ``'name'``, ``'-name'``, ``'name desc'`` or column expressions."""
        order = list(self._order)
        for key in keys:
            if isinstance(key, str):
                name, _, direction = key.strip().partition(" ")
                direction = direction.strip().lower() or "asc"
                if name.startswith("-"):
                    name, direction = name[1:], "desc"
                if direction not in _DIRECTIONS:
                    raise QueryError(f"order_by({key!r}): direction must be asc or desc")
                self._meta.column(name)
                order.append(("name", name, direction))
            elif isinstance(key, ColumnElement):
                order.append(("expr", key))
            else:
                raise QueryError(f"order_by() takes column names or expressions, not {key!r}")
        return self._copy(_order=tuple(order))

    def limit(self, count: int) -> Query[M]:
        return self._copy(_limit=_non_negative("limit", count))

    def offset(self, count: int) -> Query[M]:
        return self._copy(_offset=_non_negative("offset", count))

    def select(self, *names: str) -> Query[M]:
        """Load only these columns; the records are partial."""
        for name in names:
            self._meta.column(name)
        return self._copy(_select=tuple(dict.fromkeys(names)) or None)

    def using(self, name: str) -> Query[M]:
        """Run this query on the connection ``name``."""
        routing.resolve(self.model, name)
        return self._copy(_using=name)

    def with_(self, *paths: str) -> Query[M]:
        """Eager-load relations (``'posts'``, ``'posts.comments'``): one query per relation."""
        for path in paths:
            model: Any = self.model
            for part in str(path).split("."):
                relation = relations_of(model).get(part)
                if relation is None:
                    raise QueryError(
                        f"{model.__name__} has no relation {part!r} (in with_({path!r})); "
                        f"relations: {', '.join(relations_of(model)) or 'none'}"
                    )
                model = relation.target
        return self._copy(_with=tuple(dict.fromkeys((*self._with, *paths))))

    def join(self, *names: str) -> Query[M]:
        """INNER JOIN related tables by relation name, to filter on their columns.

        Both models must live on the same connection; otherwise the join
        raises ``CrossConnectionError`` (use ``with_()`` to load across).
        """
        relations = relations_of(self.model)
        for name in names:
            if name not in relations:
                raise QueryError(
                    f"{self.model.__name__} has no relation {name!r}; "
                    f"relations: {', '.join(relations) or 'none'}"
                )
        return self._copy(_joins=tuple(dict.fromkeys((*self._joins, *names))))

    def for_update(self) -> Query[M]:
        """Lock the selected rows until the transaction ends (``SELECT ... FOR UPDATE``)."""
        return self._copy(_lock=True)

    def with_deleted(self) -> Query[M]:
        """Include soft-deleted rows."""
        return self._copy(_scope="all")

    def only_deleted(self) -> Query[M]:
        """Only soft-deleted rows."""
        return self._copy(_scope="deleted")

    # -- compiling ----------------------------------------------------------

    def _shape(self) -> Any:
        """A hashable description of the statement, or None when it cannot be cached."""
        wheres = []
        for item in self._wheres:
            kind = item[0]
            if kind == "expr":
                return None
            wheres.append((kind, item[1]) if kind != "sql" else (kind, item[1], len(item[2])))
        order = []
        for item in self._order:
            if item[0] == "expr":
                return None
            order.append(item)
        return (self._select, tuple(wheres), tuple(order), self._limit is not None,
                self._offset is not None, self._scope, self._joins, self._lock)

    def _criteria(self) -> tuple[list[Any], dict[str, Any]]:
        meta = self._meta
        table = meta.table
        clauses: list[Any] = []
        params: dict[str, Any] = {}
        for i, item in enumerate(self._wheres):
            kind = item[0]
            name = f"w{i}"
            if kind == "eq":
                clauses.append(table.c[item[1]] == sa.bindparam(name))
                params[name] = item[2]
            elif kind == "in":
                clauses.append(table.c[item[1]].in_(sa.bindparam(name, expanding=True)))
                params[name] = list(item[2])
            elif kind == "null":
                clauses.append(table.c[item[1]].is_(None))
            elif kind == "sql":
                clause, values = _fragment(item[1], item[2], name)
                clauses.append(clause)
                params.update(values)
            else:
                clauses.append(item[1])
        if meta.soft_delete_column and self._scope != "all":
            column = table.c[meta.soft_delete_column]
            clauses.append(column.is_(None) if self._scope == "live" else column.is_not(None))
        return clauses, params

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for i, item in enumerate(self._wheres):
            kind = item[0]
            if kind == "eq":
                params[f"w{i}"] = item[2]
            elif kind == "in":
                params[f"w{i}"] = list(item[2])
            elif kind == "sql":
                for j, value in enumerate(item[2]):
                    params[f"w{i}_{j}"] = value
        return params

    def _order_clauses(self) -> list[Any]:
        table = self._meta.table
        return [
            _DIRECTIONS[item[2]](table.c[item[1]]) if item[0] == "name" else item[1]
            for item in self._order
        ]

    def _columns(self) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        meta = self._meta
        if self._select is None:
            return meta.names, meta.columns
        return self._select, tuple(meta.table.c[n] for n in self._select)

    def _select_stmt(self) -> tuple[sa.Select[Any], dict[str, Any]]:
        """The SELECT for this query and its parameters, reusing a cached statement."""
        shape = self._shape()
        cache = self._meta.query_cache
        stmt = cache.get(shape) if shape is not None else None
        if stmt is not None:
            params = self._params()
        else:
            clauses, params = self._criteria()
            stmt = sa.select(*self._columns()[1]).select_from(self._from_clause())
            stmt = stmt.where(*clauses).order_by(*self._order_clauses())
            if self._limit is not None:
                stmt = stmt.limit(sa.bindparam("_ar_limit", type_=sa.Integer))
            if self._offset is not None:
                stmt = stmt.offset(sa.bindparam("_ar_offset", type_=sa.Integer))
            if self._lock:
                stmt = stmt.with_for_update()
            if shape is not None:
                if len(cache) >= _QUERY_CACHE_LIMIT:
                    cache.clear()
                cache[shape] = stmt
        if self._limit is not None:
            params["_ar_limit"] = self._limit
        if self._offset is not None:
            params["_ar_offset"] = self._offset
        return stmt, params

    def _from_clause(self) -> Any:
        table: Any = self._meta.table
        relations = relations_of(self.model)
        for name in self._joins:
            relation = relations[name]
            owner_key, target_key = relation._keys()
            target = relation.target.__table__
            table = table.join(target, self._meta.table.c[owner_key] == target.c[target_key])
        return table

    def _check_single_connection(self, name: str) -> None:
        """One statement cannot reach into another connection's database."""
        others: list[tuple[str, str]] = []
        relations = relations_of(self.model)
        for join in self._joins:
            target = relations[join].target
            others.append((target.__name__, routing.connection_name_for(target)))
        for item in self._wheres:
            if item[0] == "expr":
                for table in find_tables(item[1], check_columns=True, include_joins=True):
                    if table is self._meta.table:
                        continue
                    for model in registry.models_of_table(table):
                        others.append((model.__name__, routing.connection_name_for(model)))
        for model_name, other in others:
            if other != name:
                raise CrossConnectionError(
                    f"{self.model.__name__} is on connection {name!r} but {model_name} is on "
                    f"{other!r}: one SQL statement cannot join two databases; load related "
                    f"records with with_() instead"
                )

    def _read(self, work: Any) -> tuple[Any, str]:
        """Run ``work(sa_connection)`` where this query's reads go."""
        if self._joins or any(item[0] == "expr" for item in self._wheres):
            self._check_single_connection(routing.read_connection_name(self.model, self._using)[0])
        return routing.read(self.model, self._using, work)

    def to_sql(self) -> str:
        """The SELECT in the target connection's dialect, with placeholders for values."""
        stmt, _ = self._select_stmt()
        dialect = routing.resolve(self.model, self._using).dialect
        return str(stmt.compile(dialect=dialect))

    def __repr__(self) -> str:
        return f"<Query {self.model.__name__}: {self._select_stmt()[0]}>"

    # -- running ------------------------------------------------------------

    def _connection_name(self) -> str:
        return routing.connection_name_for(self.model, self._using)

    def all(self) -> list[M]:
        """Every matching record (and the relations asked for with ``with_``)."""
        stmt, params = self._select_stmt()
        model, names = self.model, self._columns()[0]

        def load(sa_conn: Any, origin: str) -> list[M]:
            return execution.fetch(sa_conn, stmt, params, lambda rows, converters: loader(
                model, names, converters)(rows, origin))

        records = self._read(load)[0]
        if self._with:
            eager_load(self.model, records, self._with)
        return records

    def __iter__(self) -> Iterator[M]:
        return iter(self.all())

    def first(self) -> M | None:
        """The first record (by primary key unless ordered), or None."""
        query = self if self._order else self._by_pk("asc")
        found = query.limit(1).all()
        return found[0] if found else None

    def last(self) -> M | None:
        """The last record (the order reversed; by primary key unless ordered), or None."""
        if not self._order:
            query = self._by_pk("desc")
        else:
            flipped = []
            for item in self._order:
                if item[0] != "name":
                    raise QueryError("last() cannot reverse an order given as an expression")
                flipped.append(("name", item[1], "asc" if item[2] == "desc" else "desc"))
            query = self._copy(_order=tuple(flipped))
        found = query.limit(1).all()
        return found[0] if found else None

    def _by_pk(self, direction: str) -> Query[M]:
        return self._copy(_order=tuple(("name", n, direction) for n in self._meta.pk_names))

    def find(self, *pk: Any) -> M:
        """The record with this primary key within the query; raises ``RecordNotFound``."""
        pks = self._meta.require_pk("find")
        if len(pk) != len(pks):
            raise QueryError(f"find() takes {len(pks)} primary key value(s): {', '.join(pks)}")
        found = self.where(**dict(zip(pks, pk, strict=True))).limit(1).all()
        if not found:
            key = ", ".join(f"{n}={v!r}" for n, v in zip(pks, pk, strict=True))
            raise RecordNotFound(f"{self.model.__name__} with {key} not found")
        return found[0]

    def find_by(self, **columns: Any) -> M | None:
        return self.where(**columns).first()

    def batch(self, size: int = 1000) -> Iterator[list[M]]:
        """Yield lists of at most ``size`` records, paging by primary key (keyset)."""
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise QueryError(f"batch size must be a positive integer, not {size!r}")
        if self._order or self._offset is not None:
            raise QueryError("batch() pages by primary key; remove order_by() and offset()")
        pks = self._meta.require_pk("batch")
        if self._select is not None and not set(pks) <= set(self._select):
            raise QueryError(f"batch() needs the primary key {pks} among the selected columns")
        base = self._by_pk("asc")
        key = sa.tuple_(*(self._meta.table.c[n] for n in pks)) if len(pks) > 1 else None
        remaining, last = self._limit, None
        while remaining is None or remaining > 0:
            step = size if remaining is None else min(size, remaining)
            page = base if last is None else base.where(
                key > sa.tuple_(*last) if key is not None
                else self._meta.table.c[pks[0]] > sa.literal(last[0], self._meta.table.c[pks[0]].type)
            )
            records = page.limit(step).all()
            if not records:
                return
            yield records
            if len(records) < step:
                return
            if remaining is not None:
                remaining -= len(records)
            last = tuple(getattr(records[-1], n) for n in pks)

    def _aggregate(self, expr: Any) -> Any:
        clauses, params = self._criteria()
        if self._limit is not None or self._offset is not None:
            inner, inner_params = self._select_stmt()
            sub = inner.subquery()
            stmt = sa.select(expr(sub)).select_from(sub)
            params = inner_params
        else:
            stmt = sa.select(expr(self._meta.table)).select_from(self._from_clause())
            stmt = stmt.where(*clauses)
        return self._read(lambda c, _: c.execute(stmt, params).scalar())[0]

    def count(self) -> int:
        return int(self._aggregate(lambda _t: sa.func.count()))

    def exists(self) -> bool:
        return self.limit(1).pluck(*self._columns()[0][:1]) != []

    def _column_of(self, name: str) -> Any:
        self._meta.column(name)
        return lambda t: t.c[name]

    def sum(self, name: str) -> Any:
        col = self._column_of(name)
        return self._aggregate(lambda t: sa.func.sum(col(t)))

    def avg(self, name: str) -> Any:
        col = self._column_of(name)
        return self._aggregate(lambda t: sa.func.avg(col(t)))

    def min(self, name: str) -> Any:
        col = self._column_of(name)
        return self._aggregate(lambda t: sa.func.min(col(t)))

    def max(self, name: str) -> Any:
        col = self._column_of(name)
        return self._aggregate(lambda t: sa.func.max(col(t)))

    def pluck(self, *names: str) -> list[Any]:
        """Values of one column (a list) or several (a list of tuples)."""
        if not names:
            raise QueryError("pluck() needs at least one column name")
        stmt, params = self.select(*names)._select_stmt()
        rows = self._read(lambda c, _: execution.fetch_all(c, stmt, params))[0]
        if len(names) == 1:
            return [row[0] for row in rows]
        return [tuple(row) for row in rows]

    # -- writing ------------------------------------------------------------

    def _write_criteria(self, action: str) -> tuple[list[Any], dict[str, Any]]:
        if self._limit is not None or self._offset is not None or self._order or self._joins:
            raise QueryError(
                f"{action}() applies to every matching row; remove limit/offset/order/join"
            )
        return self._criteria()

    def delete(self) -> int:
        """Delete every matching row (soft-delete models mark them); returns the count."""
        meta = self._meta
        if meta.soft_delete_column and self._scope == "live":
            return self.update(**{meta.soft_delete_column: utc_now()})
        clauses, params = self._write_criteria("delete")
        stmt = meta.table.delete().where(*clauses)
        return self._write(stmt, params)

    def hard_delete(self) -> int:
        """Delete matching rows for real, also on soft-delete models."""
        clauses, params = self._write_criteria("delete")
        return self._write(self._meta.table.delete().where(*clauses), params)

    def update(self, **values: Any) -> int:
        """Set columns on every matching row; returns the count. Values are validated."""
        if not values:
            raise QueryError("update() needs at least one column=value")
        meta = self._meta
        checked = {}
        for name, value in values.items():
            meta.column(name)
            checked[name] = meta.validate_value(name, value) if name in meta.fields else value
        clauses, params = self._write_criteria("update")
        stmt = meta.table.update().where(*clauses).values(
            {name: sa.bindparam(f"_ar_set_{name}") for name in checked}
        )
        params.update({f"_ar_set_{name}": value for name, value in checked.items()})
        return self._write(stmt, params)

    def _write(self, stmt: Any, params: dict[str, Any]) -> int:
        conn = routing.get_connection(self._connection_name())
        with atomic(conn) as frame:
            return int(frame.sa_conn.execute(stmt, params).rowcount)


def _non_negative(what: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise QueryError(f"{what}() takes a non-negative integer, not {value!r}")
    return value



