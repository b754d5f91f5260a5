"""A SQLAlchemy condition's shape and its values, so equal shapes share one statement.

    key, binds = shape_of(User.c.age > 30)
    key == shape_of(User.c.age > 40)[0]          # True
    [b.effective_value for b in binds]           # [30]

The common conditions (a table's column compared with values, ``between``,
``in_``, ``is_(None)``, arithmetic on a column, and ``and_``/``or_`` of
those) get a key read straight off the expression's public attributes;
everything else gets SQLAlchemy's own cache key (what its compiled cache
is keyed on), at about three times the cost. Either way the bound
parameters come in the same order for every expression of the key, so a
statement built from the first one runs with the values of any other.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Column
from sqlalchemy.sql import functions, operators
from sqlalchemy.sql.elements import (
    BinaryExpression,
    BindParameter,
    BooleanClauseList,
    ClauseList,
    ColumnClause,
    Grouping,
    Null,
)
from sqlalchemy.sql.sqltypes import NullType

from .expressions import ExpressionClauseList

__all__ = ["shape_of"]

# heads the quick keys, so they never equal one of SQLAlchemy's keys
_QUICK = object()
# the lists between() puts its two values in (ExpressionClauseList: None if a release drops it)
_LISTS = tuple(kind for kind in (ClauseList, ExpressionClauseList) if kind is not None)


def shape_of(expr: Any) -> tuple[Hashable, tuple[Any, ...]] | None:
    """``(key, bound parameters)``, or None for an expression SQLAlchemy does not cache."""
    binds: list[Any] = []
    key = _quick(expr, binds)
    if key is not None:
        return (_QUICK, key), tuple(binds)
    try:
        found = expr._generate_cache_key()
    except AttributeError:    # not a ClauseElement, or a SQLAlchemy without it
        return None
    if found is None:
        return None
    found_binds = tuple(found.bindparams)
    # a parameter without a value must fail as SQLAlchemy fails it, not run with None
    if any(bind.required for bind in found_binds):
        return None
    return found.key, found_binds


def _quick(expr: Any, binds: list[Any]) -> Hashable | None:
    """The key of a common condition, its parameters appended to ``binds``; None otherwise.

    Two expressions get the same key only if they render the same SQL with
    the same types: the key names the column object, the operator, the
    modifiers (``escape``, ``symmetric``, in their order) and the result type's class, and
    a parameter qualifies only when it carries the column's own type object
    and nothing else that changes rendering (expanding is part of the key).
    """
    kind = type(expr)
    if kind is BinaryExpression:
        # read off the instance's attributes at once: each attribute of a SQLAlchemy
        # element passes its class's __getattr__ hook (and the type cache), which adds up
        state = expr.__dict__
        left = state.get("left")
        if not isinstance(left, Column) or left.table is None:
            return None
        operand = _operand(state.get("right"), left.type, binds)
        if operand is None:
            return None
        modifiers = state.get("modifiers")
        if modifiers:
            modifiers = tuple(modifiers.items())
            try:
                hash(modifiers)
            except TypeError:
                return None
        return (left, state.get("operator"), operand, modifiers or None, type(state.get("type")))
    if kind is BooleanClauseList:
        parts = []
        for clause in expr.clauses:
            part = _quick(clause, binds)
            if part is None:
                return None
            parts.append(part)
        return ("bool", expr.operator, *parts)
    if kind is Grouping:
        inner = _quick(expr.element, binds)
        return None if inner is None else ("group", inner)
    if kind in _FUNCTIONS:
        return _function(expr, kind)
    return None


# sa.func.count(), sum(), max(), min() and sa.func.<any name>() as SQLAlchemy ships them:
# what they render is their class, name and arguments (a subclass of the user's may hold more)
_FUNCTIONS = frozenset({functions.count, functions.sum, functions.max, functions.min,
                        functions.Function})
_FUNCTION_STATE = frozenset({"_has_args", "clause_expr", "packagenames", "type", "name",
                             "monotonic"})
# result types whose class alone says how a value is read back
_PLAIN_RESULTS = frozenset({sa.Integer, sa.BigInteger, sa.SmallInteger, NullType})


def _function(expr: Any, kind: type) -> Hashable | None:
    """The key of a function of table columns (or ``*``), e.g. ``sa.func.count()``; None otherwise."""
    state = expr.__dict__
    if not _FUNCTION_STATE.issuperset(state) or state.get("monotonic", False) is not False:
        return None
    group = state.get("clause_expr")
    if type(group) is not Grouping:
        return None
    arguments = group.__dict__.get("element")
    if type(arguments) is not ClauseList:
        return None
    listed = arguments.__dict__
    if listed.get("operator") is not operators.comma_op or listed.get("group") is not True \
            or listed.get("group_contents") is not True:
        return None
    parts: list[Hashable] = []
    column_types = []
    for argument in listed.get("clauses", ()):
        if isinstance(argument, Column) and argument.table is not None:
            parts.append(argument)
            column_types.append(argument.type)
        elif type(argument) is ColumnClause and argument.is_literal and argument.table is None \
                and type(argument.type) is NullType:
            parts.append(("literal", argument.name))     # count()'s *
        else:
            return None
    result = state.get("type")
    if any(result is own for own in column_types):     # sum(), max(), min(): the column's type
        result_key: Hashable = ("type of", column_types.index(result))
    elif type(result) in _PLAIN_RESULTS and not vars(result):
        result_key = ("type", type(result))
    else:
        return None
    return ("function", kind, state.get("name", kind.__name__), state.get("packagenames"),
            tuple(parts), result_key)


def _plain_bind(bind: Any, column_type: Any) -> bool:
    """A parameter that renders as any other of its column: the column's type, nothing else."""
    state = bind.__dict__    # as in _quick; an attribute not kept there fails the check
    return (state.get("type") is column_type and state.get("unique") is True
            and "callable" in state and state["callable"] is None
            and state.get("literal_execute") is False and state.get("required") is False)


def _operand(right: Any, column_type: Any, binds: list[Any]) -> Hashable | None:
    kind = type(right)
    if kind is BindParameter:
        if not _plain_bind(right, column_type):
            return None
        binds.append(right)
        return "expanding" if right.expanding else "value"
    if kind is Null:
        return "null"
    if kind in _LISTS:      # between's two values
        parts = []
        for clause in right.clauses:
            if type(clause) is not BindParameter or not _plain_bind(clause, column_type):
                return None
            binds.append(clause)
            parts.append("expanding" if clause.expanding else "value")
        return ("list", kind, right.operator, right.group, *parts)
    return None
