"""Comparisons and arithmetic of a column with a value, built as SQLAlchemy builds them.

    build_comparison(User.c.age, 30, operators.gt, operators.le)   # User.c.age > 30
    build_arithmetic(User.c.age, 1, operators.add)                 # User.c.age + 1
    build_between(User.c.id, 10, 20, False)                        # User.c.id.between(10, 20)

Only for a value of the column type's own Python type (``columns.py``
decides); ``internals.py`` checks on the installed SQLAlchemy that these
equal what its operators build.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.sql import elements, operators
from sqlalchemy.sql.elements import BinaryExpression, BindParameter
from sqlalchemy.sql.sqltypes import BOOLEANTYPE, NULLTYPE

# not a public name: if a release drops it, the probe fails and SQLAlchemy builds everything
ExpressionClauseList: Any = getattr(elements, "ExpressionClauseList", None)

__all__ = ["build_arithmetic", "build_between", "build_comparison"]


def build_comparison(column: Any, value: Any, op: Any, negate: Any) -> Any:
    bind = BindParameter(column.key, value, type_=column.type, unique=True)
    return BinaryExpression(column, bind, op, type_=BOOLEANTYPE, negate=negate)


def build_arithmetic(column: Any, value: Any, op: Any) -> Any:
    # Integer <op> Integer keeps the left side's type object, as SQLAlchemy's adaptation does
    bind = BindParameter(column.key, value, type_=column.type, unique=True)
    return BinaryExpression(column, bind, op, type_=column.type)


def build_between(column: Any, low: Any, high: Any, symmetric: bool) -> Any:
    # the two values as an ungrouped "and" list, as SQLAlchemy's _between_impl makes them
    column_type, key = column.type, column.key
    values = ExpressionClauseList._construct_for_list(
        operators.and_, NULLTYPE,
        BindParameter(key, low, type_=column_type, unique=True),
        BindParameter(key, high, type_=column_type, unique=True),
        group=False)
    return BinaryExpression(column, values, operators.between_op, negate=operators.not_between_op,
                            modifiers={"symmetric": symmetric})
