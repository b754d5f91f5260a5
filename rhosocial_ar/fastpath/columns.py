"""The models' columns: SQLAlchemy's ``Column``, with cheaper comparisons against plain values.

    User.c.age > 30          # the same BinaryExpression SQLAlchemy builds, in half the time
    User.c.name.like('a%'); User.c.name.is_(None); User.c.name == None   # these too

``User.c.age > t`` is how SQLAlchemy users write a condition, and building
it costs more than the rest of a cached query: SQLAlchemy resolves the
operator, coerces the value and works out the parameter's type for every
expression. For a column of a plain type (integers, strings, floats)
compared with a value of exactly that Python type, every one of those
steps has one known answer: the parameter takes the column's own type
object and the result is a boolean. This class builds that expression
directly (``expressions.py``); anything else (``None``, another
column, a value of another type, other operators) goes to SQLAlchemy as
usual. ``internals.py`` checks once that both ways give equal expressions
(SQL, cache key, negation); if they differ, SQLAlchemy builds them all.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import operators

from . import internals
from .expressions import build_arithmetic, build_between, build_comparison, build_like, build_null_test

__all__ = ["ModelColumn"]

# exact classes only: a subclass (Enum is a String) may coerce values its own way
_PLAIN = {
    sa.Integer: int, sa.BigInteger: int, sa.SmallInteger: int,
    sa.String: str, sa.Text: str, sa.Unicode: str, sa.UnicodeText: str,
    sa.Float: float, sa.Double: float,
}
_INTEGERS = (sa.Integer, sa.BigInteger, sa.SmallInteger)


def _compare(column: Any, value: Any, op: Any, negate: Any) -> Any:
    """``column <op> value`` as SQLAlchemy would build it, or None to let SQLAlchemy build it."""
    if value is None and op in _NULL_TESTS:     # == None is IS NULL, != None IS NOT NULL
        return _null_test(column, None, *_NULL_TESTS[op])
    if _PLAIN.get(type(column.type)) is not type(value) or not internals.usable():
        return None
    return build_comparison(column, value, op, negate)


_NULL_TESTS = {operators.eq: (operators.is_, operators.is_not),
               operators.ne: (operators.is_not, operators.is_)}


def _null_test(column: Any, value: Any, op: Any, negate: Any) -> Any:
    if value is not None or type(column.type) not in _PLAIN or not internals.usable():
        return None
    return build_null_test(column, op, negate)


def _like(column: Any, value: Any, escape: Any, op: Any, negate: Any) -> Any:
    if _PLAIN.get(type(column.type)) is not str or type(value) is not str \
            or (escape is not None and type(escape) is not str) or not internals.usable():
        return None
    return build_like(column, value, op, negate, escape)


def _arithmetic(column: Any, value: Any, op: Any) -> Any:
    """``column + 1`` on an integer column, or None to let SQLAlchemy build it."""
    if type(column.type) not in _INTEGERS or type(value) is not int or not internals.usable():
        return None
    return build_arithmetic(column, value, op)


def _between(column: Any, low: Any, high: Any, symmetric: Any) -> Any:
    plain = _PLAIN.get(type(column.type))
    if plain is None or type(low) is not plain or type(high) is not plain \
            or type(symmetric) is not bool or not internals.usable():
        return None
    return build_between(column, low, high, symmetric)


def _quick_operator(name: str, op: Any, negate: Any = None) -> Any:
    """A ``Column`` operator method: the direct build when it applies, else SQLAlchemy's own.

    Never ``quick or fallback``: an expression's truth is not its existence
    (``==`` compares hashes).
    """
    fallback = getattr(sa.Column, name)

    def method(self: Any, other: Any) -> Any:
        built = (_arithmetic(self, other, op) if negate is None
                 else _compare(self, other, op, negate))
        return fallback(self, other) if built is None else built

    method.__name__ = method.__qualname__ = name
    return method


class ModelColumn(sa.Column):  # type: ignore[type-arg]
    """A model table's column (``User.c.age``); a ``sqlalchemy.Column`` in every respect."""

    inherit_cache = True
    __hash__ = sa.Column.__hash__     # defining __eq__ would drop it

    __eq__ = _quick_operator("__eq__", operators.eq, operators.ne)
    __ne__ = _quick_operator("__ne__", operators.ne, operators.eq)
    __lt__ = _quick_operator("__lt__", operators.lt, operators.ge)
    __le__ = _quick_operator("__le__", operators.le, operators.gt)
    __gt__ = _quick_operator("__gt__", operators.gt, operators.le)
    __ge__ = _quick_operator("__ge__", operators.ge, operators.lt)
    __add__ = _quick_operator("__add__", operators.add)
    __sub__ = _quick_operator("__sub__", operators.sub)

    def between(self, cleft: Any, cright: Any, symmetric: bool = False) -> Any:
        built = _between(self, cleft, cright, symmetric)
        return super().between(cleft, cright, symmetric) if built is None else built

    def like(self, other: Any, escape: str | None = None) -> Any:
        built = _like(self, other, escape, operators.like_op, operators.not_like_op)
        return super().like(other, escape) if built is None else built

    def not_like(self, other: Any, escape: str | None = None) -> Any:
        built = _like(self, other, escape, operators.not_like_op, operators.like_op)
        return super().not_like(other, escape) if built is None else built

    def is_(self, other: Any) -> Any:
        built = _null_test(self, other, operators.is_, operators.is_not)
        return super().is_(other) if built is None else built

    def is_not(self, other: Any) -> Any:
        built = _null_test(self, other, operators.is_not, operators.is_)
        return super().is_not(other) if built is None else built

    notlike = not_like      # SQLAlchemy's older names, the same methods
    isnot = is_not
