"""Core in, records out: a query's Core statement, and records from any Core SELECT.

    adults = User.where('age >= ?', 18)
    sa.select(sa.func.count()).select_from(adults.subquery())   # a query inside Core
    ranked = sa.select(User.__table__, sa.func.rank().over(order_by=User.c.age).label('rank'))
    User.from_statement(ranked)                                 # records, each with .rank
    User.where(status='a').union(User.where(age=1)).order_by('name').all()

Statements given by the user run through SQLAlchemy's own execution (its
compiled cache, keyed by the statement's structure); the fast path keeps to
the library's own statement shapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.util import find_tables

from . import aio, registry, routing
from .errors import CrossConnectionError, QueryError

if TYPE_CHECKING:
    from .model import ActiveRecord
    from .query import Query

__all__ = ["Compound", "bound_statement", "combine", "from_statement"]

M = TypeVar("M", bound="ActiveRecord")

_SET_OPERATIONS = {"union": sa.union, "union_all": sa.union_all, "intersect": sa.intersect,
                   "except_": sa.except_}


def bound_statement(query: Query[Any]) -> Any:
    """The query's SELECT with its values bound in, ready to be used in Core."""
    stmt, params = query._select_stmt()
    if query._joins or query._exprs or query._uncached:   # it may name another connection's table
        query._check_single_connection(routing.read_connection_name(query.model, query._using)[0])
    return visitors.replacement_traverse(  # type: ignore[call-overload]
        stmt, {}, lambda element: _unique_bind(element, params))


def _unique_bind(element: Any, params: dict[str, Any]) -> Any:
    """A bound parameter of the query's statement made unique, with its value.

    The library names parameters by position (``w0``, ...), so two queries'
    statements share names; unique ones keep them apart inside one Core statement.
    """
    if not isinstance(element, BindParameter):
        return None
    value = params.get(element.key, element.value)
    return sa.bindparam(element.key, value, type_=element.type, unique=True,
                        expanding=element.expanding)


def check_one_connection(model: Any, stmt: Any, connection: str) -> None:
    """A statement naming a table of another connection's model cannot run on ``connection``."""
    for table in find_tables(stmt, check_columns=True, include_joins=True, include_selects=True):
        for other in registry.models_of_table(table):
            name = routing.connection_name_for(other)
            if name != connection:
                raise CrossConnectionError(
                    f"{model.__name__} reads from connection {connection!r} but the statement "
                    f"names {other.__name__}'s table {table.name!r} on {name!r}: one SQL statement "
                    f"cannot reach two databases"
                )


def from_statement(model: type[M], stmt: Any, using: str | None = None) -> list[M]:
    """Records of ``model`` from a Core SELECT (CTE, window functions, unions...).

    Its columns named like the model's load as fields; the others (labelled
    expressions) are readable on each record, as ``annotate()`` gives them.
    """
    if not isinstance(stmt, sa.Select | sa.CompoundSelect):
        raise QueryError(f"{model.__name__}.from_statement() takes a Core select(), union() ..., "
                         f"not {type(stmt).__name__} (raw SQL: raw_query())")
    meta = model.__ar_meta__
    # the names the rows will carry (selected_columns' keys would rename a repeated one),
    # a model column's by its field (Field(column=...) names the column otherwise)
    by_name = meta.key_of_name
    named = [_name_of(column, by_name) for column in stmt.selected_columns]
    if None in named:
        raise QueryError(f"{model.__name__}.from_statement(): label every expression the "
                         f"statement selects (.label('name'))")
    keys: list[str] = [str(name) for name in named]
    if len(set(keys)) != len(keys):
        raise QueryError(f"{model.__name__}.from_statement(): the statement selects a name twice "
                         f"({', '.join(sorted({k for k in keys if keys.count(k) > 1}))}); label them")
    fields = [k for k in keys if k in meta.name_set]
    extras = [k for k in keys if k not in meta.name_set]
    if not fields:
        raise QueryError(f"{model.__name__}.from_statement(): the statement selects none of the "
                         f"model's columns ({', '.join(meta.names)})")
    bad = [k for k in extras if k.startswith("_") or k in meta.fields or hasattr(model, k)]
    if bad:
        raise QueryError(f"{model.__name__}.from_statement(): {', '.join(map(repr, bad))} would be "
                         f"hidden on the records (private, a field or an attribute of the model); "
                         f"label it otherwise")
    read_name = routing.read_connection_name(model, using)[0]
    check_one_connection(model, stmt, read_name)
    positions = [keys.index(k) for k in fields]
    extra_positions = [keys.index(k) for k in extras]

    def fetch(sa_conn: Any, _: str) -> list[Any]:
        return list(sa_conn.execute(stmt).all())

    rows, origin = routing.read(model, using, fetch)
    records = model._ar_load_many(fields, [tuple(row[i] for i in positions) for row in rows], origin)
    if extras:
        for record, row in zip(records, rows, strict=True):
            # as grouping.records(): pydantic reads attributes from __pydantic_extra__
            object.__setattr__(record, "__pydantic_extra__",
                               {k: row[i] for k, i in zip(extras, extra_positions, strict=True)})
    return records


def _name_of(column: Any, by_name: dict[str, str]) -> str | None:
    name = getattr(column, "name", None)
    if name in by_name and getattr(column, "key", None) == by_name[name]:
        return by_name[name]
    return name


def combine(first: Query[M], others: Sequence[Any], operation: str) -> Compound[M]:
    """``first.union(*others)`` and the other set operations, checked."""
    parts = [first, *others]
    for part in parts:
        _check_part(first, part, operation)
    return Compound(first, tuple(parts), operation)


def _check_part(first: Query[Any], part: Any, operation: str) -> None:
    model = first.model
    if getattr(part, "model", None) is not model or not hasattr(part, "_select_stmt"):
        raise QueryError(f"{operation}() combines queries of one model ({model.__name__}), "
                         f"not {part!r}")
    if part._limit is not None or part._offset is not None or part._order:
        raise QueryError(f"{operation}(): order and limit the combined query, not its parts")
    if part._extra is not None or part._with or part._lock:
        raise QueryError(f"{operation}(): its parts take where(), select(), join() and scopes; "
                         f"computed columns, group_by(), with_() and for_update() are not allowed")
    if part._select != first._select:
        raise QueryError(f"{operation}(): every part must select the same columns")
    mine = routing.read_connection_name(model, first._using)[0]
    theirs = routing.read_connection_name(model, part._using)[0]
    if mine != theirs:
        raise CrossConnectionError(f"{operation}(): the parts read from {mine!r} and {theirs!r}; "
                                   f"one statement cannot reach two databases")


class Compound(Generic[M]):
    """Queries of one model combined by UNION, UNION ALL, INTERSECT or EXCEPT; immutable.

    ``order_by()`` (column names, ``'-name'`` for descending), ``limit()`` and
    ``offset()`` apply to the combined rows; ``all()`` loads records.
    """

    __slots__ = ("first", "parts", "operation", "_order", "_limit", "_offset")

    def __init__(self, first: Query[M], parts: tuple[Any, ...], operation: str) -> None:
        self.first, self.parts, self.operation = first, parts, operation
        self._order: tuple[tuple[str, bool], ...] = ()
        self._limit: int | None = None
        self._offset: int | None = None

    def _copy(self) -> Compound[M]:
        new = Compound(self.first, self.parts, self.operation)
        new._order, new._limit, new._offset = self._order, self._limit, self._offset
        return new

    @property
    def model(self) -> type[M]:
        return self.first.model

    def order_by(self, *keys: str) -> Compound[M]:
        new = self._copy()
        for key in keys:
            if not isinstance(key, str):
                raise QueryError(f"order_by() of a {self.operation}() takes column names, not {key!r}")
            name = key.strip()
            descending = name.startswith("-") or name.lower().endswith(" desc")
            name = name.lstrip("-").split(" ")[0]
            self.first._meta.column(name)
            new._order += ((name, descending),)
        return new

    def limit(self, count: int) -> Compound[M]:
        new = self._copy()
        new._limit = _count("limit", count)
        return new

    def offset(self, count: int) -> Compound[M]:
        new = self._copy()
        new._offset = _count("offset", count)
        return new

    @property
    def statement(self) -> Any:
        """The Core compound SELECT, its values bound."""
        combine_with = _SET_OPERATIONS[self.operation]
        stmt = combine_with(*(bound_statement(part) for part in self.parts))
        columns = stmt.selected_columns
        for name, descending in self._order:
            stmt = stmt.order_by(columns[name].desc() if descending else columns[name])
        if self._limit is not None:
            stmt = stmt.limit(self._limit)
        if self._offset is not None:
            stmt = stmt.offset(self._offset)
        return stmt

    def subquery(self, name: str | None = None) -> Any:
        return self.statement.subquery(name)

    def all(self) -> list[M]:
        return from_statement(self.model, self.statement, self.first._using)

    def __iter__(self) -> Iterator[M]:
        return iter(self.all())

    async def aall(self) -> list[M]:
        return await aio.run(self.all)

    async def acount(self) -> int:
        return await aio.run(self.count)

    def count(self) -> int:
        stmt = sa.select(sa.func.count()).select_from(self.subquery())
        return int(routing.read(self.model, self.first._using,
                                lambda c, _: c.execute(stmt).scalar_one())[0])

    def union(self, *others: Any) -> Compound[M]:
        return self._chain(others, "union")

    def union_all(self, *others: Any) -> Compound[M]:
        return self._chain(others, "union_all")

    def intersect(self, *others: Any) -> Compound[M]:
        return self._chain(others, "intersect")

    def except_(self, *others: Any) -> Compound[M]:
        return self._chain(others, "except_")

    def _chain(self, others: Sequence[Any], operation: str) -> Compound[M]:
        if operation != self.operation or self._order or self._limit is not None \
                or self._offset is not None:
            raise QueryError(f"{self.operation}() then {operation}(): combine the same operation, "
                             f"before order_by()/limit(); nest others through subquery() in Core")
        for part in others:
            _check_part(self.first, part, operation)
        return Compound(self.first, (*self.parts, *others), operation)

    def __repr__(self) -> str:
        return f"<{self.operation}() of {len(self.parts)} {self.model.__name__} queries>"


def _count(what: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise QueryError(f"{what}() takes a non-negative integer, not {value!r}")
    return value

