"""Comparisons and arithmetic of a column with a value, built as SQLAlchemy builds them.

    build_comparison(User.c.age, 30, operators.gt, operators.le)   # User.c.age > 30
    build_arithmetic(User.c.age, 1, operators.add)                 # User.c.age + 1

Only for a value of the column type's own Python type (``columns.py``
decides); ``internals.py`` checks on the installed SQLAlchemy that these
equal what its operators build.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.sql.elements import BinaryExpression, BindParameter
from sqlalchemy.sql.sqltypes import BOOLEANTYPE

__all__ = ["build_arithmetic", "build_comparison"]


def build_comparison(column: Any, value: Any, op: Any, negate: Any) -> Any:
    bind = BindParameter(column.key, value, type_=column.type, unique=True)
    return BinaryExpression(column, bind, op, type_=BOOLEANTYPE, negate=negate)


def build_arithmetic(column: Any, value: Any, op: Any) -> Any:
    # Integer <op> Integer keeps the left side's type object, as SQLAlchemy's adaptation does
    bind = BindParameter(column.key, value, type_=column.type, unique=True)
    return BinaryExpression(column, bind, op, type_=column.type)
