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
