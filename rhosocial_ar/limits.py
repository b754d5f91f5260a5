"""What fits a column, checked in Python before anything is written.

    fits = column_checks(User.__table__)        # {'username': check, 'age': check, ...}
    fits['username']('x' * 300)                 # 'is 300 characters long; VARCHAR(50) holds 50'

The backends disagree on a value that does not fit: PostgreSQL refuses it,
MySQL in a non-strict ``sql_mode`` truncates or clamps it with a warning,
SQLite stores it whatever the declared type. Checking the declared type on
the client makes all three refuse it, whatever the server's mode.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from .errors import ValueNotStorable
from .values import TextValue, to_naive_utc

__all__ = ["Check", "column_checks", "fit_value"]

# a value -> what is wrong with it (None: it fits)
Check = Callable[[Any], str | None]

# tuples, not unions: a check runs for every value written
_TEXTS = (str, bytes)
_NUMBERS = (int, decimal.Decimal)
_INTEGER_BITS = ((sa.BigInteger, 64), (sa.SmallInteger, 16), (sa.Integer, 32))
# enough digits for any NUMERIC the backends accept (PostgreSQL: 1000)
_EXACT = decimal.Context(prec=2000, traps=[decimal.InvalidOperation])


def column_checks(table: sa.Table) -> dict[str, Check | None]:
    """The columns a write checks or converts: their check (lengths, integer ranges, digits).

    DATETIME columns come with None: nothing to refuse, but an aware value
    is converted to naive UTC (``values.UTCDateTime``).
    """
    checks: dict[str, Check | None] = {}
    for column in table.c:
        type_ = column.type
        check = _check_for(type_)
        if check is not None:
            checks[column.key] = check
        elif isinstance(type_, sa.DateTime) or isinstance(
                getattr(type_, "impl_instance", None), sa.DateTime):
            checks[column.key] = None
    return checks


def fit_value(name: str, check: Check | None, value: Any, where: str) -> Any:
    """``value`` as it is written (aware datetimes as naive UTC); raises if it does not fit."""
    if value is None:
        return value
    if check is not None:
        problem = check(value)
        if problem is not None:
            shown = repr(value)
            shown = shown if len(shown) <= 60 else f"{shown[:40]}...{shown[-12:]}"
            raise ValueNotStorable(f"{where}.{name}: {shown} {problem}; nothing was written")
    return to_naive_utc(value)


def _check_for(type_: Any) -> Check | None:
    if isinstance(type_, TextValue):     # a URL: its text must fit
        check = _length(type_.impl_instance)
        return None if check is None else lambda value: check(str(value))
    if isinstance(type_, sa.TypeDecorator):
        type_ = type_.impl_instance
    if isinstance(type_, sa.Enum):       # pydantic allows only its members
        return None
    if isinstance(type_, sa.String | sa.LargeBinary):
        return _length(type_)
    if isinstance(type_, sa.Integer):
        return _integer(type_)
    if isinstance(type_, sa.Numeric) and not isinstance(type_, sa.Float):
        return _numeric(type_)
    return None


def _length(type_: Any) -> Check | None:
    limit = getattr(type_, "length", None)
    if not limit:
        return None
    kind = "bytes" if isinstance(type_, sa.LargeBinary) else "characters"
    label = type(type_).__name__.upper()

    def check(value: Any) -> str | None:
        if isinstance(value, _TEXTS) and len(value) > limit:
            return f"is {len(value)} {kind} long; {label}({limit}) holds {limit}"
        return None

    check.max_length = limit  # type: ignore[attr-defined]   # for column_fits()
    return check


def _integer(type_: Any) -> Check:
    bits = next(b for kind, b in _INTEGER_BITS if isinstance(type_, kind))
    if getattr(type_, "unsigned", False):
        low, high = 0, 2 ** bits - 1
    else:
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    label = f"a {bits}-bit {'unsigned ' if low == 0 else ''}integer column"

    def check(value: Any) -> str | None:
        if isinstance(value, int) and not low <= value <= high:
            return f"is out of range for {label} ({low} to {high})"
        return None

    check.bounds = (low, high)  # type: ignore[attr-defined]   # for column_fits()
    return check


def _numeric(type_: sa.Numeric[Any]) -> Check | None:
    precision, scale = type_.precision, type_.scale
    if precision is None:
        return None
    places = scale or 0
    whole = precision - places
    quantum = decimal.Decimal(1).scaleb(-places)
    label = f"NUMERIC({precision}, {places})"

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, _NUMBERS):
            return None
        number = decimal.Decimal(value)
        if not number.is_finite():
            return f"is not a finite number; {label} holds only those"
        digits = number.adjusted() + 1 if number else 0
        if digits > whole:
            return f"has {digits} digits before the point; {label} holds {whole}"
        if number.as_tuple().exponent < -places and not _rounds_to_itself(number, quantum):  # type: ignore[operator]
            return f"has more than {places} decimal places; {label} would round it"
        return None

    return check


def _rounds_to_itself(number: decimal.Decimal, quantum: decimal.Decimal) -> bool:
    """Whether ``number`` at ``quantum``'s places is still ``number`` (its extra places are zeros)."""
    try:
        return _EXACT.quantize(number, quantum) == number
    except decimal.InvalidOperation:   # more digits than any column holds
        return False


def column_fits(check: Check, values: list[Any]) -> bool:
    """True when every value of a bulk insert's column surely passes ``check``, at C speed.

    False means "look at each value" (a None, a value of another type, or one
    that does not fit): never a verdict of its own.
    """
    try:
        limit = getattr(check, "max_length", None)
        if limit is not None:
            return max(map(len, values), default=0) <= limit
        bounds = getattr(check, "bounds", None)
        if bounds is not None and values:
            return bool(bounds[0] <= min(values) and max(values) <= bounds[1])
    except TypeError:    # None, or a value without a length or an order
        pass
    return False
