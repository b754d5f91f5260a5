"""A query's plan, as the database tells it.

    print(User.where(status='active').order_by('-id').explain())
    # SQLite:      SEARCH users USING INDEX ...      (EXPLAIN QUERY PLAN)
    # PostgreSQL:  Sort  (cost=...) / -> Seq Scan on users ...
    # MySQL:       id | select_type | table | type | ...

The statement is the query's own, with its values bound, run where the
query's reads go; nothing is written.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable

from . import dialects

__all__ = ["explain"]


class _Explain(Executable, ClauseElement):
    """``EXPLAIN <statement>``, the statement's parameters bound as in the statement."""

    inherit_cache = False   # a diagnostic: not worth a place in SQLAlchemy's cache

    def __init__(self, statement: Any) -> None:
        self.statement = statement


@compiles(_Explain)
def _compile_explain(element: _Explain, compiler: Any, **kw: Any) -> str:
    # compiled as a nested statement: a top-level SELECT would give the plan's rows its
    # own columns' types, and their converters would run on the plan's text
    compiler.stack.append({"correlate_froms": set(), "asfrom_froms": set(), "selectable": element})
    try:
        inner = compiler.process(element.statement, **kw)
    finally:
        compiler.stack.pop()
    return dialects.explain_prefix(compiler.dialect) + str(inner)


def explain(sa_conn: Any, statement: Any, params: dict[str, Any]) -> str:
    """The plan of ``statement`` with ``params`` on ``sa_conn``, as text."""
    result = sa_conn.execute(_Explain(statement), params)
    keys = list(result.keys())
    return dialects.plan_text(sa_conn.dialect, keys, result.all())
