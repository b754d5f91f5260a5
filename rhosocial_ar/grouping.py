"""Aggregates beyond one value: several in one query.

    totals = User.where(status='active').aggregate(
        n=sa.func.count(), oldest=sa.func.max(User.c.age), emails=sa.func.count(User.c.email))
    totals['n'], totals['oldest']

The expressions are shaped like any other (``fastpath.shape_of``): a query
built the same way again reuses its statement with the new values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement

from . import fastpath, routing
from .errors import QueryError

if TYPE_CHECKING:
    from .query import Query

__all__ = ["aggregate"]


def aggregate(query: Query[Any], named: dict[str, Any]) -> dict[str, Any]:
    """``{name: value}`` of each expression over the query's matching rows, in one SELECT."""
    if not named:
        raise QueryError("aggregate() needs at least one name=expression, "
                         "e.g. aggregate(n=sa.func.count())")
    if query._limit is not None or query._offset is not None:
        raise QueryError("aggregate() computes over every matching row; remove limit/offset")
    work = query._copy()            # the expressions join the conditions' in the copy
    items = []
    for name, expr in named.items():
        if not isinstance(expr, ColumnElement):
            raise QueryError(f"aggregate({name}=...) takes a SQLAlchemy expression such as "
                             f"sa.func.sum(Model.c.age), not {expr!r}")
        items.append((name, work._expression(expr)))
    shape = ("aggregates", tuple(items), work._wheres, work._scope, work._joins)

    def build() -> Any:
        clauses, _ = work._criteria()
        columns = [work._clause(item).label(name) for name, item in items]
        return sa.select(*columns).select_from(work._from_clause()).where(*clauses)

    stmt = work._cached(shape, build)
    params = work._params()
    # one statement, one database: the expressions may name another model's table
    work._check_single_connection(routing.read_connection_name(work.model, work._using)[0],
                                  tuple(item for _, item in items))
    rows = work._read(lambda c, _: fastpath.fetch_all(c, stmt, params))[0]
    return dict(zip(named, rows[0], strict=True))


# -- computed columns, GROUP BY and HAVING --------------------------------------
#
# A query keeps them in one slot, ``Query._extra``: None, or a hashable triple
# (computed, group, having) of the items ``Query._expression`` makes (so they
# are part of the statement's shape and cached like conditions):
#   computed  ((name, item), ...)   loaded beside the columns, labelled ``name``
#   group     (item, ...)           ('name', column) or an expression item
#   having    (item, ...)

_NO_EXTRA: tuple[Any, Any, Any] = ((), (), ())


def computed(query: Query[Any], named: dict[str, Any]) -> None:
    """Add ``name=expression`` columns to ``query`` (a fresh copy), checked."""
    meta = query._meta
    computed_, group, having = query._extra or _NO_EXTRA
    taken = {name for name, _ in computed_}
    for name, expr in named.items():
        if name.startswith("_") or name in meta.name_set or name in taken or name in meta.fields:
            raise QueryError(f"{meta.model.__name__}: a computed column cannot be called {name!r} "
                             f"(a column or field of the model, another computed one, or private)")
        if not isinstance(expr, ColumnElement):
            raise QueryError(f"select({name}=...)/annotate({name}=...) takes a SQLAlchemy "
                             f"expression such as sa.func.count(), not {expr!r}")
        computed_ += ((name, query._expression(expr)),)
        taken.add(name)
    query._extra = (computed_, group, having)


def group_by(query: Query[Any], keys: tuple[Any, ...]) -> None:
    """Add GROUP BY keys (column names or expressions) to ``query`` (a fresh copy)."""
    if not keys:
        raise QueryError("group_by() needs at least one column name or expression")
    computed_, group, having = query._extra or _NO_EXTRA
    for key in keys:
        if isinstance(key, str):
            query._meta.column(key)
            group += (("name", key),)
        elif isinstance(key, ColumnElement):
            group += (query._expression(key),)
        else:
            raise QueryError(f"group_by() takes column names or expressions, not {key!r}")
    query._extra = (computed_, group, having)


def having(query: Query[Any], conditions: tuple[Any, ...]) -> None:
    """Add HAVING conditions (expressions, ANDed) to ``query`` (a fresh copy)."""
    computed_, group, having_ = query._extra or _NO_EXTRA
    if not group:
        raise QueryError("having() filters groups: call group_by() first")
    for cond in conditions:
        if not isinstance(cond, ColumnElement):
            raise QueryError(f"having() takes SQLAlchemy expressions such as "
                             f"sa.func.count() > 1, not {cond!r}")
        having_ += (query._expression(cond),)
    query._extra = (computed_, group, having_)


def items(extra: Any) -> tuple[Any, ...]:
    """Every expression item of an ``_extra``, for the one-connection check."""
    if extra is None:
        return ()
    computed_, group, having_ = extra
    return (*(item for _, item in computed_), *group, *having_)


def is_grouped(query: Query[Any]) -> bool:
    return query._extra is not None and bool(query._extra[1])


def extend(query: Query[Any], stmt: Any) -> Any:
    """``stmt`` (the query's SELECT) with its computed columns, GROUP BY and HAVING."""
    computed_, group, having_ = query._extra
    table = query._meta.table
    if computed_:
        stmt = stmt.add_columns(*(query._clause(item).label(name) for name, item in computed_))
    if group:
        stmt = stmt.group_by(*(table.c[item[1]] if item[0] == "name" else query._clause(item)
                               for item in group))
    if having_:
        stmt = stmt.having(*(query._clause(item) for item in having_))
    return stmt


def row_keys(query: Query[Any]) -> tuple[str, ...]:
    """The names of a row of the query's SELECT: its columns, then the computed ones."""
    names = query._meta.names if query._select is None else query._select
    return (*names, *(name for name, _ in (query._extra or _NO_EXTRA)[0]))


def rows(query: Query[Any]) -> list[dict[str, Any]]:
    """The query's rows as dicts by name (columns, then computed values)."""
    stmt, params = query._select_stmt()
    found = query._read(lambda c, _: fastpath.fetch_all(c, stmt, params))[0]
    return fastpath.as_dicts(row_keys(query))(found)


def records(query: Query[Any]) -> list[Any]:
    """Records with their computed values readable as attributes (never saved)."""
    if is_grouped(query):
        raise QueryError("a grouped query gives rows, not records: call rows()")
    extra_names = [name for name, _ in query._extra[0]]
    hidden = [name for name in extra_names if hasattr(query.model, name)]
    if hidden:   # the class attribute would be read instead of the value
        raise QueryError(f"computed {', '.join(map(repr, hidden))} would be hidden by "
                         f"{query.model.__name__}'s attribute of that name on its records; "
                         f"rename it (rows() has no such limit)")
    stmt, params = query._select_stmt()
    found, origin = query._read(lambda c, _: fastpath.fetch_all(c, stmt, params))
    names = query._meta.names if query._select is None else query._select
    width = len(names)
    loaded = query.model._ar_load_many(names, [row[:width] for row in found], origin)
    for record, row in zip(loaded, found, strict=True):
        # pydantic reads attributes from __pydantic_extra__; to_dict() and save() never see it
        object.__setattr__(record, "__pydantic_extra__", dict(zip(extra_names, row[width:],
                                                                   strict=True)))
    return loaded  # type: ignore[no-any-return]


def pluck(query: Query[Any], args: tuple[Any, ...]) -> list[Any]:
    """``pluck()`` given expressions too (a joined table's column): through ``rows()``."""
    names: list[str] = []
    computed_: dict[str, Any] = {}
    keys = []
    for i, arg in enumerate(args):
        if isinstance(arg, str):
            names.append(arg)
            keys.append(arg)
        elif isinstance(arg, ColumnElement):
            computed_[f"pluck{i}"] = arg
            keys.append(f"pluck{i}")
        else:
            raise QueryError(f"pluck() takes column names or expressions, not {arg!r}")
    found = rows(query.select(*dict.fromkeys(names), **computed_))
    if len(keys) == 1:
        return [row[keys[0]] for row in found]
    return [tuple(row[k] for k in keys) for row in found]
