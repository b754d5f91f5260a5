"""The chainable, immutable query.

    q = User.where(status='active').where('age > ?', 18).order_by('-created_at').limit(10)
    q.all(); q.first(); q.count(); q.pluck('email'); q.to_sql()
    for batch in User.where(status='active').batch(1000): ...

Column names given as strings are checked against the table; values are
always bound parameters. Statements are built once per query shape and
reused, so a query built the same way twice costs no SQLAlchemy work.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement, visitors
from sqlalchemy.sql.util import find_tables

from . import aio, fanout, fastpath, grouping, joins, registry, routing, sharding, statements
from .errors import CrossConnectionError, QueryError, RecordNotFound
from .explain import explain as explain_plan
from .meta import ModelMeta
from .mixins import utc_now
from .relation import eager_load, relations_of
from .transaction import atomic, current_frame
from .values import bind_type

if TYPE_CHECKING:
    from .model import ActiveRecord

__all__ = ["Query"]

M = TypeVar("M", bound="ActiveRecord")

_QUERY_CACHE_LIMIT = 512
_DIRECTIONS = {"asc": sa.asc, "desc": sa.desc}
_SCOPES = ("live", "all", "deleted")
_new = object.__new__
# the tables an expression names, by its shape (the shape holds the tables themselves)
_tables_named: dict[Any, list[Any]] = {}


def _fragment(sql: str, names: Sequence[str], kinds: Sequence[type]) -> sa.TextClause:
    """Turn ``'age > ? AND name = ?'`` into a text clause with the bound parameters ``names``.

    Each is typed by its value's Python type (``kinds``), so it is converted
    as a column of that type converts it: the keyword form's match.
    """
    parts = sql.replace(":", "\\:").split("?")
    if len(parts) - 1 != len(names):
        raise QueryError(
            f"{sql!r} has {len(parts) - 1} '?' placeholders but {len(names)} values"
        )
    text = parts[0] + "".join(f":{n}{part}" for n, part in zip(names, parts[1:], strict=True))
    return sa.text(text).bindparams(*(sa.bindparam(n, type_=bind_type(kind))
                                      for n, kind in zip(names, kinds, strict=True)))


@functools.lru_cache(maxsize=1024)
def _sql_params(position: int, count: int) -> tuple[str, ...]:
    """The parameter names of a SQL fragment's values: the where's position, then the value's."""
    return tuple(f"w{position}_{i}" for i in range(count))


def _direction(key: str, meta: ModelMeta) -> tuple[str, str]:
    """``'name'``, ``'-name'``, ``'name desc'`` -> (name, 'asc' or 'desc').

    The name is checked first: a string that is not a column raises
    ``UnknownColumnError`` whatever follows it.
    """
    name, _, direction = key.strip().partition(" ")
    direction = direction.strip().lower() or "asc"
    if name.startswith("-"):
        name, direction = name[1:], "desc"
    meta.column(name)
    if direction not in _DIRECTIONS:
        raise QueryError(f"order_by({key!r}): direction must be asc or desc")
    return name, direction


class Query(Generic[M]):
    """An immutable query over one model; every method returns a new query.

    The conditions are kept apart from their values: ``_wheres`` holds one
    hashable item per condition with its parameter names (fixed by its
    position), ``_args`` the (parameter, value) pairs. The conditions, the
    order and the flags name the statement in the model's cache; a chain
    built the same way again reuses it with new values. A SQLAlchemy
    expression is named by its shape (SQLAlchemy's cache key, see
    ``fastpath.shape_of``) and kept in ``_exprs`` with its bound parameters,
    whose values are sent under names fixed by their position
    (``_ar_e<expression>_<parameter>``). Only an expression SQLAlchemy
    cannot cache makes the query ``_uncached``: built and compiled each time.
    """

    __slots__ = ("model", "_meta", "_using", "_wheres", "_args", "_exprs", "_order", "_limit",
                 "_offset", "_select", "_scope", "_with", "_joins", "_lock", "_uncached", "_extra")

    def __init__(self, model: type[M]) -> None:
        self.model = model
        self._meta: ModelMeta = model.__ar_meta__   # read at every step: kept, not looked up
        self._using: str | None = None
        self._wheres: tuple[tuple[Any, ...], ...] = ()
        self._args: tuple[tuple[str, Any], ...] = ()
        self._exprs: tuple[tuple[Any, tuple[Any, ...]], ...] = ()
        self._order: tuple[tuple[Any, ...], ...] = ()
        self._limit: int | None = None
        self._offset: int | None = None
        self._select: tuple[str, ...] | None = None
        self._scope = "live"
        self._with: tuple[Any, ...] = ()     # paths, and (path, condition) pairs
        self._joins: tuple[Any, ...] = ()     # relation names and explicit joins (joins.py)
        self._lock = False
        self._uncached = False
        self._extra: Any = None     # computed columns, GROUP BY, HAVING (grouping.py)

    def _copy(self) -> Query[M]:
        # spelled out, and the caller sets what changes: this runs for every step of every chain
        new = _new(Query)
        new.model = self.model
        new._meta = self._meta
        new._using = self._using
        new._wheres = self._wheres
        new._args = self._args
        new._exprs = self._exprs
        new._order = self._order
        new._limit = self._limit
        new._offset = self._offset
        new._select = self._select
        new._scope = self._scope
        new._with = self._with
        new._joins = self._joins
        new._lock = self._lock
        new._uncached = self._uncached
        new._extra = self._extra
        return new

    # -- building -----------------------------------------------------------
    # Each step copies the query and adds to the copy (``_add_*``); the model's
    # class methods add to a new query directly. A step that raises leaves
    # nothing behind: the copy is dropped.

    def where(self, *conditions: Any, **columns: Any) -> Query[M]:
        """Filter by ``column=value``, a SQL fragment with ``?`` and values, or expressions."""
        new = self._copy()
        new._add_where(conditions, columns)
        return new

    def _add_where(self, conditions: tuple[Any, ...], columns: dict[str, Any]) -> None:
        if conditions and isinstance(conditions[0], str):
            sql, values = conditions[0], conditions[1:]
            if sql.count("?") != len(values):         # checked now, not when it runs
                raise QueryError(f"where({sql!r}) has {sql.count('?')} '?' placeholders but "
                                 f"{len(values)} values")
            names = _sql_params(len(self._wheres), len(values))
            # the values' types are part of the shape: each binds with its type's conversion
            kinds = (type(values[0]),) if len(values) == 1 else tuple(map(type, values))
            self._wheres += (("sql", sql, names, kinds),)
            # one value is the common case, and zip() costs more than the rest of where()
            self._args += (((names[0], values[0]),) if len(values) == 1
                           else tuple(zip(names, values, strict=True)))
        else:
            for cond in conditions:
                if not isinstance(cond, ColumnElement):
                    raise QueryError(
                        f"where() takes column=value, a SQL string with '?' or a SQLAlchemy "
                        f"expression, not {cond!r}"
                    )
                self._wheres += (self._expression(cond),)
        if columns:
            meta = self._meta
            for name, value in columns.items():
                meta.column(name)
                param = f"w{len(self._wheres)}"
                if value is None:
                    self._wheres += (("null", name),)
                elif isinstance(value, list | tuple | set | frozenset):
                    self._wheres += (("in", name, param),)
                    self._args += ((param, list(value)),)
                else:
                    self._wheres += (("eq", name, param),)
                    self._args += ((param, value),)

    def order_by(self, *keys: Any) -> Query[M]:
        """Order by ``'name'``, ``'-name'``, ``'name desc'`` or column expressions."""
        new = self._copy()
        new._add_order(keys)
        return new

    def _add_order(self, keys: tuple[Any, ...]) -> None:
        order = self._order
        parsed = self._meta.order_keys
        for key in keys:
            item = parsed.get(key) if isinstance(key, str) else None
            if item is None:
                if isinstance(key, str):
                    name, direction = _direction(key, self._meta)
                    item = ("name", name, direction)
                    if len(parsed) >= _QUERY_CACHE_LIMIT:
                        parsed.clear()
                    parsed[key] = item
                elif isinstance(key, ColumnElement):
                    item = self._expression(key)
                else:
                    raise QueryError(f"order_by() takes column names or expressions, not {key!r}")
            order += (item,)
        self._order = order

    def _expression(self, expr: Any) -> tuple[Any, ...]:
        """The item naming ``expr`` in a shape: ``('shaped', key, index)``, or ``('expr', expr)``."""
        shape = fastpath.shape_of(expr)
        if shape is None:
            self._uncached = True
            return ("expr", expr)
        self._exprs += ((expr, shape[1]),)
        return ("shaped", shape[0], len(self._exprs) - 1)

    def _clause(self, item: tuple[Any, ...]) -> Any:
        """The expression of an ``_expression`` item, its parameters named by position."""
        if item[0] == "expr":
            return item[1]
        expr, binds = self._exprs[item[2]]
        return _named_binds(expr, item[2], binds)

    def limit(self, count: int) -> Query[M]:
        new = self._copy()
        new._limit = count if type(count) is int and count >= 0 else _non_negative("limit", count)
        return new

    def offset(self, count: int) -> Query[M]:
        new = self._copy()
        new._offset = count if type(count) is int and count >= 0 else _non_negative("offset", count)
        return new

    def select(self, *names: str, **computed: Any) -> Query[M]:
        """Load only these columns (the records are partial), and ``name=expression`` values."""
        for name in names:
            self._meta.column(name)
        new = self._copy()
        # computed values alone: only they are selected
        new._select = tuple(dict.fromkeys(names)) or (() if computed else None)
        if computed:
            grouping.computed(new, computed)
        return new

    def annotate(self, **computed: Any) -> Query[M]:
        """Load ``name=expression`` values beside the columns, readable on each record."""
        new = self._copy()
        grouping.computed(new, computed)
        return new

    def group_by(self, *keys: Any) -> Query[M]:
        """GROUP BY column names or expressions; read the groups with ``rows()``."""
        new = self._copy()
        grouping.group_by(new, keys)
        return new

    def having(self, *conditions: Any) -> Query[M]:
        """Keep only the groups where these expressions hold."""
        new = self._copy()
        grouping.having(new, conditions)
        return new

    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts by name: the selected columns, then the computed values."""
        if self.model.__shards__ is not None and self._using is None:
            return sharding.single(self, "rows()").rows()
        return grouping.rows(self)

    def using(self, name: str) -> Query[M]:
        """Run this query on the connection ``name``."""
        routing.resolve(self.model, name)
        new = self._copy()
        new._using = name
        return new

    def with_(self, *paths: str | tuple[str, Callable[[Any], Any]]) -> Query[M]:
        """Eager-load relations (``'posts'``, ``'posts.comments'``): one query per relation.

        ``('posts', lambda q: q.where(published=True))`` loads only what the function
        makes of the related model's query (relation.py, ``eager_load``).
        """
        for path in paths:
            if isinstance(path, tuple):
                if len(path) != 2 or not isinstance(path[0], str) or not callable(path[1]):
                    raise QueryError(f"with_() takes 'relation.path' or ('relation.path', "
                                     f"function of a query), not {path!r}")
                path = path[0]
            model: Any = self.model
            for part in str(path).split("."):
                relation = relations_of(model).get(part)
                if relation is None:
                    raise QueryError(
                        f"{model.__name__} has no relation {part!r} (in with_({path!r})); "
                        f"relations: {', '.join(relations_of(model)) or 'none'}"
                    )
                model = relation.target
        new = self._copy()
        new._with = tuple(dict.fromkeys((*self._with, *paths)))
        return new

    def join(self, *args: Any) -> Query[M]:
        """INNER JOIN related tables by relation name, or ``join(target, on_condition)``
        for any model, table or alias (joins.py).

        Both models must live on the same connection; otherwise the join
        raises ``CrossConnectionError`` (use ``with_()`` to load across).
        """
        new = self._copy()
        joins.add(new, args, outer=False)
        return new

    def left_join(self, *args: Any) -> Query[M]:
        """LEFT OUTER JOIN, by relation name or ``left_join(target, on_condition)``."""
        new = self._copy()
        joins.add(new, args, outer=True)
        return new

    def for_update(self) -> Query[M]:
        """Lock the selected rows until the transaction ends (``SELECT ... FOR UPDATE``)."""
        new = self._copy()
        new._lock = True
        return new

    def all_rows(self) -> Query[M]:
        """Say that an ``update()`` or ``delete()`` without ``where()`` means every row."""
        new = self._copy()
        if ("all",) not in new._wheres:
            new._wheres += (("all",),)
        return new

    def with_deleted(self) -> Query[M]:
        """Include soft-deleted rows."""
        new = self._copy()
        new._scope = "all"
        return new

    def only_deleted(self) -> Query[M]:
        """Only soft-deleted rows."""
        new = self._copy()
        new._scope = "deleted"
        return new

    def _ordered(self, order: tuple[tuple[Any, ...], ...]) -> Query[M]:
        new = self._copy()
        new._order = order
        return new

    # -- compiling ----------------------------------------------------------

    def _criteria(self) -> tuple[list[Any], dict[str, Any]]:
        """The WHERE clauses and their parameters."""
        meta = self._meta
        table = meta.table
        clauses: list[Any] = []
        for item in self._wheres:
            kind = item[0]
            if kind == "eq":
                clauses.append(table.c[item[1]] == sa.bindparam(item[2]))
            elif kind == "in":
                clauses.append(table.c[item[1]].in_(sa.bindparam(item[2], expanding=True)))
            elif kind == "null":
                clauses.append(table.c[item[1]].is_(None))
            elif kind == "sql":
                clauses.append(_fragment(item[1], item[2], item[3]))
            elif kind == "after":
                keys = [table.c[n] for n in meta.pk_names]
                last = [sa.bindparam(p, type_=c.type) for p, c in zip(item[1], keys, strict=True)]
                clauses.append(keys[0] > last[0] if len(keys) == 1
                               else sa.tuple_(*keys) > sa.tuple_(*last))
            elif kind == "all":     # all_rows(): no condition, said on purpose
                continue
            else:
                clauses.append(self._clause(item))
        if meta.soft_delete_column and self._scope != "all":
            column = table.c[meta.soft_delete_column]
            clauses.append(column.is_(None) if self._scope == "live" else column.is_not(None))
        return clauses, self._params()

    def _params(self) -> dict[str, Any]:
        """The values of the conditions, and of the expressions' parameters by position."""
        params = dict(self._args)
        for i, (_, binds) in enumerate(self._exprs):
            for j, bind in enumerate(binds):
                params[f"_ar_e{i}_{j}"] = bind.effective_value
        return params

    def _order_clauses(self) -> list[Any]:
        table = self._meta.table
        return [
            _DIRECTIONS[item[2]](table.c[item[1]]) if item[0] == "name" else self._clause(item)
            for item in self._order
        ]

    def _columns(self) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        meta = self._meta
        if self._select is None:
            return meta.names, meta.columns
        return self._select, tuple(meta.table.c[n] for n in self._select)

    def _select_stmt(self) -> tuple[sa.Select[Any], dict[str, Any]]:
        """The SELECT for this query and its parameters, reusing a cached statement."""
        limit, offset = self._limit, self._offset
        # the parameter names are part of the conditions: equal shapes, equal statements
        stmt = self._cached((self._select, self._wheres, self._order, limit is None,
                             offset is None, self._scope, self._joins, self._lock, self._extra),
                            self._build_select)
        params = self._params()
        if limit is not None:
            params["_ar_limit"] = limit
        if offset is not None:
            params["_ar_offset"] = offset
        return stmt, params

    def _build_select(self) -> sa.Select[Any]:
        clauses, _ = self._criteria()
        stmt = sa.select(*self._columns()[1]).select_from(self._from_clause())
        stmt = stmt.where(*clauses).order_by(*self._order_clauses())
        if self._limit is not None:
            stmt = stmt.limit(sa.bindparam("_ar_limit", type_=sa.Integer))
        if self._offset is not None:
            stmt = stmt.offset(sa.bindparam("_ar_offset", type_=sa.Integer))
        if self._lock:
            stmt = stmt.with_for_update()
        if self._extra is not None:
            stmt = grouping.extend(self, stmt)
        return stmt

    def _from_clause(self) -> Any:
        return joins.from_clause(self) if self._joins else self._meta.table

    def _check_single_connection(self, name: str,
                                 extra: tuple[tuple[Any, ...], ...] = ()) -> None:
        """One statement cannot reach into another connection's database."""
        others = joins.connections(self)
        for item in (*self._wheres, *self._order, *grouping.items(self._extra), *joins.items(self),
                     *extra):
            if item[0] in ("expr", "shaped"):
                for model in self._models_named_by(item):
                    others.append((model.__name__, routing.connection_name_for(model)))
        for model_name, other in others:
            if other != name:
                raise CrossConnectionError(
                    f"{self.model.__name__} is on connection {name!r} but {model_name} is on "
                    f"{other!r}: one SQL statement cannot join two databases; load related "
                    f"records with with_() instead"
                )

    def _models_named_by(self, item: tuple[Any, ...]) -> list[Any]:
        """The other models whose tables an expression names (found once per shape)."""
        key = item[1] if item[0] == "shaped" else None
        tables = _tables_named.get(key) if key is not None else None
        if tables is None:
            expr = item[1] if item[0] == "expr" else self._exprs[item[2]][0]
            tables = [t for t in find_tables(expr, check_columns=True, include_joins=True)
                      if t is not self._meta.table]
            if key is not None:
                if len(_tables_named) >= _QUERY_CACHE_LIMIT:
                    _tables_named.clear()
                _tables_named[key] = tables
        return [model for table in tables for model in registry.models_of_table(table)]

    def _read(self, work: Any, *args: Any) -> tuple[Any, str]:
        """Run ``work(sa_connection, origin, *args)`` where this query's reads go."""
        if self._joins or self._exprs or self._uncached:   # only then can it name another table
            self._check_single_connection(routing.read_connection_name(self.model, self._using)[0])
        return routing.read(self.model, self._using, work, *args)

    def to_sql(self) -> str:
        """The SELECT in the target connection's dialect, with placeholders for values."""
        stmt, _ = self._select_stmt()
        dialect = routing.resolve(self.model, self._using).dialect
        return str(stmt.compile(dialect=dialect))

    # -- Core in, records out (statements.py) --------------------------------

    @property
    def statement(self) -> sa.Select[Any]:
        """This query's Core ``Select``, its values bound: for use in your own Core statements."""
        return statements.bound_statement(self)  # type: ignore[no-any-return]

    def subquery(self, name: str | None = None) -> sa.Subquery:
        return self.statement.subquery(name)

    def cte(self, name: str | None = None) -> sa.CTE:
        return self.statement.cte(name)

    def union(self, *others: Query[M]) -> statements.Compound[M]:
        """UNION with other queries of this model on this connection; ``all()`` loads records."""
        return statements.combine(self, others, "union")

    def union_all(self, *others: Query[M]) -> statements.Compound[M]:
        return statements.combine(self, others, "union_all")

    def intersect(self, *others: Query[M]) -> statements.Compound[M]:
        return statements.combine(self, others, "intersect")

    def except_(self, *others: Query[M]) -> statements.Compound[M]:
        return statements.combine(self, others, "except_")

    def explain(self) -> str:
        """The database's plan for this query's SELECT, as text (its values bound)."""
        stmt, params = self._select_stmt()
        return self._read(lambda c, _: explain_plan(c, stmt, params))[0]  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<Query {self.model.__name__}: {self._select_stmt()[0]}>"

    # -- running ------------------------------------------------------------

    def _connection_name(self) -> str:
        return routing.connection_name_for(self.model, self._using)

    def all(self) -> list[M]:
        """Every matching record (and the relations asked for with ``with_``)."""
        model = self.model
        if model.__shards__ is not None and self._using is None:   # sharding.py, fanout.py
            shards = sharding.plan(self)
            return (self.using(shards[0]).all() if len(shards) == 1
                    else fanout.all_records(self, shards))
        if self._extra is not None:     # computed values beside the columns
            records: list[M] = grouping.records(self)
        else:
            stmt, params = self._select_stmt()
            names = self._select or self._meta.names
            records = self._read(fastpath.fetch_records, stmt, params, model, names)[0]
        if self._with:
            eager_load(model, records, self._with)
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
            query = self._ordered(tuple(flipped))
        found = query.limit(1).all()
        return found[0] if found else None

    def _by_pk(self, direction: str) -> Query[M]:
        return self._ordered(tuple(("name", n, direction) for n in self._meta.pk_names))

    def _after(self, last: tuple[Any, ...]) -> Query[M]:
        """The rows whose primary key comes after ``last``: keyset paging, one cached statement."""
        new = self._copy()
        names = _sql_params(len(self._wheres), len(last))
        new._wheres += (("after", names),)
        new._args += tuple(zip(names, last, strict=True))
        return new

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
        if self.model.__shards__ is not None and self._using is None:
            yield from fanout.batches(self, size, sharding.plan(self))
            return
        if self._order or self._offset is not None:
            raise QueryError("batch() pages by primary key; remove order_by() and offset()")
        pks = self._meta.require_pk("batch")
        if self._select is not None and not set(pks) <= set(self._select):
            raise QueryError(f"batch() needs the primary key {pks} among the selected columns")
        base = self._by_pk("asc")
        remaining, last = self._limit, None
        while remaining is None or remaining > 0:
            step = size if remaining is None else min(size, remaining)
            page = base if last is None else base._after(last)
            records = page.limit(step).all()
            if not records:
                return
            yield records
            if len(records) < step:
                return
            if remaining is not None:
                remaining -= len(records)
            last = tuple(getattr(records[-1], n) for n in pks)

    def _aggregate(self, function: str, name: str | None = None, distinct: bool = False) -> Any:
        """``function`` (a ``sa.func`` name) over column ``name`` (None: every row) of the matching
        rows; ``distinct``: over its distinct values."""
        if name is not None:
            self._meta.column(name)
        if self.model.__shards__ is not None and self._using is None:
            shards = sharding.plan(self)
            return (self.using(shards[0])._aggregate(function, name, distinct) if len(shards) == 1
                    else fanout.aggregate(self, function, name, distinct, shards))
        # grouped: over the groups, as over a page
        paged = self._limit is not None or self._offset is not None or grouping.is_grouped(self)
        # the shape of a plain SELECT of this query, then what is computed over it
        shape = ("aggregate", function, name, distinct, paged, self._extra, self._select,
                 self._wheres,
                 self._order if paged else (), self._limit is None, self._offset is None,
                 self._scope, self._joins, self._lock)

        def build() -> Any:
            compute = getattr(sa.func, function)
            if paged:       # over the page the limit and offset pick
                source: Any = self._build_select().subquery()
            else:
                source = self._meta.table
            if name is not None and name not in source.c:
                raise QueryError(f"{function}({name!r}) of a page or groups needs {name!r} "
                                 f"among the selected columns")
            column = None if name is None else source.c[name]
            stmt = sa.select(compute() if column is None
                             else compute(column.distinct() if distinct else column))
            if paged:
                return stmt.select_from(source)
            clauses, _ = self._criteria()
            return stmt.select_from(self._from_clause()).where(*clauses)

        stmt = self._cached(shape, build)
        params = self._params()
        if self._limit is not None:
            params["_ar_limit"] = self._limit
        if self._offset is not None:
            params["_ar_offset"] = self._offset
        rows = self._read(lambda c, _: fastpath.fetch_all(c, stmt, params))[0]
        return rows[0][0]

    def count(self, name: str | None = None, *, distinct: bool = False) -> int:
        """The matching rows; with a column name, its non-NULL values (``distinct``: different ones)."""
        if distinct and name is None:
            raise QueryError("count(distinct=True) needs a column name: count('email', distinct=True)")
        return int(self._aggregate("count", name, distinct))

    def aggregate(self, **named: Any) -> dict[str, Any]:
        """Several aggregate expressions in one query: ``aggregate(n=sa.func.count(), ...)``."""
        if self.model.__shards__ is not None and self._using is None:
            return sharding.single(self, "aggregate()").aggregate(**named)
        return grouping.aggregate(self, named)

    def exists(self) -> bool:
        return self.limit(1).pluck(*self._columns()[0][:1]) != []

    def sum(self, name: str) -> Any:
        return self._aggregate("sum", name)

    def avg(self, name: str) -> Any:
        return self._aggregate("avg", name)

    def min(self, name: str) -> Any:
        return self._aggregate("min", name)

    def max(self, name: str) -> Any:
        return self._aggregate("max", name)

    def pluck(self, *names: Any) -> list[Any]:
        """Values of one column (a list) or several (a list of tuples); names or expressions."""
        if not names:
            raise QueryError("pluck() needs at least one column name")
        for name in names:
            if not isinstance(name, str):   # a joined table's column, an expression
                return grouping.pluck(self, names)
        rows = self._rows(names)
        if len(names) == 1:
            return [row[0] for row in rows]
        unique = tuple(dict.fromkeys(names))
        if len(unique) < len(names):   # a name asked twice is selected once, returned twice
            pick = itemgetter(*(unique.index(n) for n in names))
            return list(map(pick, rows))
        return [tuple(row) for row in rows]

    def _rows(self, names: Sequence[str]) -> list[Sequence[Any]]:
        """The rows of these columns, as the driver (or SQLAlchemy) gives them, converted."""
        if self.model.__shards__ is not None and self._using is None:
            shards = sharding.plan(self)
            return (self.using(shards[0])._rows(names) if len(shards) == 1
                    else fanout.rows(self, names, shards))
        query = self.select(*names)
        if query._extra is not None:
            if grouping.is_grouped(query):
                raise QueryError("pluck() of a grouped query: read the groups with rows()")
            query._extra = None      # the computed values are not asked for
        stmt, params = query._select_stmt()
        return self._read(lambda c, _: fastpath.fetch_all(c, stmt, params))[0]  # type: ignore[no-any-return]

    # -- writing ------------------------------------------------------------

    def _write_stmt(self, action: str, build: Callable[[list[Any]], Any],
                    *shape: Any) -> Any:
        """This query's UPDATE or DELETE from ``build(where_clauses)``, reused across equal shapes."""
        if (self._limit is not None or self._offset is not None or self._order or self._joins
                or self._extra is not None):
            raise QueryError(f"{action}() applies to every matching row; remove "
                             f"limit/offset/order/join/group_by and computed columns")
        self._require_condition(action)
        # SELECT keys start with a tuple or None, so the two kinds never meet
        return self._cached((action, self._wheres, self._scope, *shape),
                            lambda: build(self._criteria()[0]))

    def _require_condition(self, action: str) -> None:
        """A write without any condition must say so: a forgotten where() would hit every row."""
        if not self._wheres and self._scope != "deleted":   # only_deleted() picks some rows
            name = self.model.__name__
            raise QueryError(
                f"{name}: {action}() without a condition would change every row; add where(...) "
                f"or say so with all_rows(): {name}.all_rows().{action}(...)"
            )

    def _cached(self, shape: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """The model's statement for this query shape, built on first use.

        A query with an expression SQLAlchemy cannot cache builds its
        statement every time: such an expression compares by identity, so
        it could only fill the cache.
        """
        if self._uncached:
            return build()
        cache = self._meta.query_cache
        stmt = cache.get(shape)
        if stmt is None:
            if len(cache) >= _QUERY_CACHE_LIMIT:
                cache.clear()
            stmt = cache[shape] = build()
        return stmt

    def delete(self) -> int:
        """Delete every matching row (soft-delete models mark them); returns the count."""
        self._require_condition("delete")
        meta = self._meta
        if meta.soft_delete_column and self._scope == "live":
            return self.update(**{meta.soft_delete_column: utc_now()})
        return self.hard_delete()

    def hard_delete(self) -> int:
        """Delete matching rows for real, also on soft-delete models."""
        self._require_condition("hard_delete")
        table = self._meta.table
        stmt = self._write_stmt("delete", lambda clauses: table.delete().where(*clauses))
        return self._write(stmt, self._params())

    def update(self, **values: Any) -> int:
        """Set columns on every matching row; returns the count.

        Plain values are validated as the field's type; SQLAlchemy expressions
        (``age=User.c.age + 1``, ``name=sa.func.upper(User.c.name)``) are sent
        as they are, computed by the database for each row.
        """
        if not values:
            raise QueryError("update() needs at least one column=value")
        meta = self._meta
        query = self._copy()        # the values' expressions join the conditions' in the copy
        assigned: list[tuple[Any, ...]] = []
        params: dict[str, Any] = {}
        fitted: list[tuple[str, str]] = []   # (column, parameter) of the plain values
        for name, value in values.items():
            meta.column(name)
            if isinstance(value, ColumnElement):
                assigned.append((name, query._expression(value)))
            else:
                assigned.append((name, None))
                params[f"_ar_set_{name}"] = (meta.validate_value(name, value)
                                             if name in meta.fields else value)
                fitted.append((name, f"_ar_set_{name}"))
        if fitted:   # refused before anything is sent, as a save refuses it
            plain = {name: params[param] for name, param in fitted}
            meta.fit(plain)
            for name, param in fitted:
                params[param] = plain[name]
        shape = tuple(assigned)

        def build(clauses: list[Any]) -> Any:
            return meta.table.update().where(*clauses).values({
                name: sa.bindparam(f"_ar_set_{name}") if item is None else query._clause(item)
                for name, item in shape})

        stmt = query._write_stmt("update", build, shape)
        params.update(query._params())
        return query._write(stmt, params, tuple(item for _, item in shape if item is not None))

    def _write(self, stmt: Any, params: dict[str, Any], extra: tuple[Any, ...] = ()) -> int:
        if self.model.__shards__ is not None and self._using is None:   # each shard's own
            return sharding.write(self, lambda pinned: pinned._write(stmt, params, extra))
        conn = routing.get_connection(self._connection_name())
        if self._exprs or self._uncached:
            self._check_single_connection(conn.name, extra)
        frame = current_frame(conn.name)
        if frame is None or conn.read_only:       # a transaction of its own (read-only: refused)
            with atomic(conn) as frame:
                return _run_write(frame.sa_conn, stmt, params, self._uncached)
        frame.wrote = True
        return _run_write(frame.sa_conn, stmt, params, self._uncached)

    # -- awaitable forms: each runs its sync twin in the asyncio bridge (aio.py) --

    async def aexplain(self) -> str:
        return await aio.run(self.explain)

    async def aall(self) -> list[M]:
        return await aio.run(self.all)

    async def afirst(self) -> M | None:
        return await aio.run(self.first)

    async def alast(self) -> M | None:
        return await aio.run(self.last)

    async def afind(self, *pk: Any) -> M:
        return await aio.run(self.find, *pk)

    async def afind_by(self, **columns: Any) -> M | None:
        return await aio.run(self.find_by, **columns)

    def abatch(self, size: int = 1000) -> AsyncIterator[list[M]]:
        """``async for batch in query.abatch(1000):`` each page is read in the bridge."""
        return aio.iterate(self.batch(size))

    async def acount(self, name: str | None = None, *, distinct: bool = False) -> int:
        return await aio.run(self.count, name, distinct=distinct)

    async def aaggregate(self, **named: Any) -> dict[str, Any]:
        return await aio.run(self.aggregate, **named)

    async def arows(self) -> list[dict[str, Any]]:
        return await aio.run(self.rows)

    async def aexists(self) -> bool:
        return await aio.run(self.exists)

    async def asum(self, name: str) -> Any:
        return await aio.run(self.sum, name)

    async def aavg(self, name: str) -> Any:
        return await aio.run(self.avg, name)

    async def amin(self, name: str) -> Any:
        return await aio.run(self.min, name)

    async def amax(self, name: str) -> Any:
        return await aio.run(self.max, name)

    async def apluck(self, *names: Any) -> list[Any]:
        return await aio.run(self.pluck, *names)

    async def adelete(self) -> int:
        return await aio.run(self.delete)

    async def ahard_delete(self) -> int:
        return await aio.run(self.hard_delete)

    async def aupdate(self, **values: Any) -> int:
        return await aio.run(self.update, **values)


def _run_write(sa_conn: Any, stmt: Any, params: dict[str, Any], uncached: bool) -> int:
    if uncached:    # a statement of its own: SQLAlchemy's cache knows it, ours not
        return int(sa_conn.execute(stmt, params).rowcount)
    return fastpath.write(sa_conn, stmt, params)


def _non_negative(what: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise QueryError(f"{what}() takes a non-negative integer, not {value!r}")
    return value





def _named_binds(expr: Any, index: int, binds: tuple[Any, ...]) -> Any:
    """``expr`` with its bound parameters named ``_ar_e<index>_<position>``.

    The statement built from one expression then runs with the values of
    any other of its shape, on the fast path and through SQLAlchemy alike
    (an anonymous parameter's name would be this expression's alone).
    """
    names: dict[int, str] = {}
    for position, bind in enumerate(binds):
        names.setdefault(id(bind), f"_ar_e{index}_{position}")

    def rename(element: Any) -> Any:
        name = names.get(id(element))
        if name is None:
            return None
        return sa.bindparam(name, element.value, type_=element.type, expanding=element.expanding,
                            literal_execute=element.literal_execute, callable_=element.callable)

    return visitors.replacement_traverse(expr, {}, rename)  # type: ignore[call-overload]
