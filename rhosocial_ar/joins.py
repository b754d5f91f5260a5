"""Joins of a query: by relation name, or to any table, model or alias with an ON condition.

    Member.join('notes').where(Note.c.published.is_(True))             # INNER JOIN by relation
    Member.left_join('notes').select('name', title=Note.c.title).rows()
    n = Note.__table__.alias('n')
    Member.left_join(n, (n.c.member_id == Member.c.id) & n.c.published).select(...)

A query keeps its joins in ``Query._joins``, each hashable, as part of its
statement's shape: a relation name (an inner join, the original form),
``('left', name)``, or ``('on', target key, index, condition item, outer)``
where the target itself waits in ``Query._exprs[index]`` (with no
parameters), so the shape names an alias by its table and name, not by the
object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement

from . import registry, routing
from .errors import QueryError
from .relation import relations_of

if TYPE_CHECKING:
    from .query import Query

__all__ = ["add", "connections", "from_clause", "items"]


def add(query: Query[Any], args: tuple[Any, ...], outer: bool) -> None:
    """Add the joins ``args`` ask for to ``query`` (a fresh copy)."""
    kind = "left_join" if outer else "join"
    if args and all(isinstance(a, str) for a in args):
        relations = relations_of(query.model)
        for name in args:
            if name not in relations:
                raise QueryError(f"{query.model.__name__} has no relation {name!r}; "
                                 f"relations: {', '.join(relations) or 'none'}")
        new = tuple(("left", name) if outer else name for name in args)
        query._joins = tuple(dict.fromkeys((*query._joins, *new)))
        return
    if len(args) != 2 or not isinstance(args[1], ColumnElement):
        raise QueryError(f"{kind}() takes relation names, or a model, table or alias and an ON "
                         f"condition: {kind}(Note, Note.c.member_id == Member.c.id)")
    target, condition = args
    table = _table_of(target, kind)
    key = ("alias", table.element, table.name) if isinstance(table, sa.Alias) else table
    query._exprs += ((table, ()),)          # the target, kept beside the expressions
    index = len(query._exprs) - 1
    query._joins += (("on", key, index, query._expression(condition), outer),)


def _table_of(target: Any, kind: str) -> Any:
    table = getattr(target, "__table__", target)    # a model: its table
    if isinstance(table, sa.Table | sa.Alias):
        return table
    raise QueryError(f"{kind}() joins a model, a Table or an alias of one, not {target!r}")


def from_clause(query: Query[Any]) -> Any:
    """The FROM of ``query``: its table and its joins in order."""
    base = query._meta.table
    joined: Any = base
    relations = relations_of(query.model) if query._joins else {}
    for join in query._joins:
        if isinstance(join, str) or join[0] == "left":
            name = join if isinstance(join, str) else join[1]
            relation = relations[name]
            owner_key, target_key = relation._keys()
            target = relation.target.__table__
            joined = joined.join(target, base.c[owner_key] == target.c[target_key],
                                 isouter=not isinstance(join, str))
        else:
            _, _, index, condition, outer = join
            joined = joined.join(query._exprs[index][0], query._clause(condition), isouter=outer)
    return joined


def items(query: Query[Any]) -> tuple[Any, ...]:
    """The ON conditions' expression items, for the one-connection check."""
    return tuple(join[3] for join in query._joins if not isinstance(join, str) and join[0] == "on")


def connections(query: Query[Any]) -> list[tuple[str, str]]:
    """(model name, connection name) of every model a join reaches."""
    found = []
    relations = relations_of(query.model) if query._joins else {}
    for join in query._joins:
        if isinstance(join, str) or join[0] == "left":
            target = relations[join if isinstance(join, str) else join[1]].target
            found.append((target.__name__, routing.connection_name_for(target)))
        else:
            table = query._exprs[join[2]][0]
            table = table.element if isinstance(table, sa.Alias) else table
            for model in registry.models_of_table(table):
                found.append((model.__name__, routing.connection_name_for(model)))
    return found
