"""Comparisons and arithmetic of a column with a value, built as SQLAlchemy builds them.

    build_comparison(User.c.age, 30, operators.gt, operators.le)   # User.c.age > 30
    build_arithmetic(User.c.age, 1, operators.add)                 # User.c.age + 1
    build_between(User.c.id, 10, 20, False)                        # User.c.id.between(10, 20)
    build_like(User.c.name, 'a%', operators.like_op, operators.not_like_op, None)
    build_null_test(User.c.name, operators.is_, operators.is_not)  # User.c.name.is_(None)

Only for a value of the column type's own Python type (``columns.py``
decides); ``internals.py`` checks on the installed SQLAlchemy that these
equal what its operators build.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import null as _null
from sqlalchemy.sql import elements, operators
from sqlalchemy.sql.elements import BinaryExpression, BindParameter
from sqlalchemy.sql.sqltypes import BOOLEANTYPE, NULLTYPE

# not public names: if a release drops one, the probe fails and SQLAlchemy builds everything
ExpressionClauseList: Any = getattr(elements, "ExpressionClauseList", None)
_anonymous_label: Any = getattr(elements, "_anonymous_label", None)

__all__ = ["build_arithmetic", "build_between", "build_comparison", "build_like", "build_null_test"]

_new = object.__new__
_new_str = str.__new__
# what a parameter's own identity sets (its anonymous name) and what each one is given
_BIND_OWN = frozenset({"key", "_anon_map_key", "_identifying_key", "value"})
_BINARY_OWN = frozenset({"left", "right", "_orig", "modifiers", "_propagate_attrs"})


def build_comparison(column: Any, value: Any, op: Any, negate: Any) -> Any:
    return _binary(column, _bind(column, value), op, BOOLEANTYPE, negate, None)


def build_arithmetic(column: Any, value: Any, op: Any) -> Any:
    # Integer <op> Integer keeps the left side's type object, as SQLAlchemy's adaptation does
    return _binary(column, _bind(column, value), op, column.type, None, None)


def build_like(column: Any, value: Any, op: Any, negate: Any, escape: str | None) -> Any:
    # like() and not_like() keep their escape as a modifier, None included
    return _binary(column, _bind(column, value), op, BOOLEANTYPE, negate, {"escape": escape})


def build_null_test(column: Any, op: Any, negate: Any) -> Any:
    """``column IS NULL`` (``op`` is ``operators.is_``) or ``IS NOT NULL`` (``is_not``)."""
    return _binary(column, _null(), op, BOOLEANTYPE, negate, None)


def build_between(column: Any, low: Any, high: Any, symmetric: bool) -> Any:
    # the two values as an ungrouped "and" list, as SQLAlchemy's _between_impl makes them
    values = ExpressionClauseList._construct_for_list(
        operators.and_, NULLTYPE, _bind(column, low), _bind(column, high), group=False)
    return _binary(column, values, operators.between_op, NULLTYPE, operators.not_between_op,
                   {"symmetric": symmetric})


def _bind(column: Any, value: Any) -> Any:
    """``BindParameter(column.key, value, type_=column.type, unique=True)``, in half the time.

    A fresh parameter's attributes, copied from one built by SQLAlchemy for
    this column, with its own anonymous name made as ``BindParameter``
    makes it (``%(<id> <key>)s``). The probe compares the attributes of
    both ways; ``copying(False)`` makes every parameter the public way.
    """
    if not _copying:
        return BindParameter(column.key, value, type_=column.type, unique=True)
    own = column.__dict__     # one pass through the column's __getattr__ hook, not two
    template = own.get("_ar_bind_template")
    if template is None or template[0] is not own.get("type"):
        template = own["_ar_bind_template"] = _bind_template(column)
    bind = _new(BindParameter)
    state = bind.__dict__
    state.update(template[1])
    name = f"{id(bind)} {template[2]}"
    # _anonymous_label(text), without its constructor's checks that a fresh text passes
    label = _new_str(_anonymous_label, f"%({name})s")
    label.quote = None
    state["key"] = state["_identifying_key"] = label
    if template[3]:     # SQLAlchemy 2.0.37 and later keep the name's inside too
        state["_anon_map_key"] = name
    state["value"] = value
    return bind


def _bind_template(column: Any) -> tuple[Any, dict[str, Any], str, bool]:
    made = BindParameter(column.key, None, type_=column.type, unique=True)
    # "%(<id> <key as sanitised and escaped>)s": the part after the id is every such name's
    prefix = f"%({id(made)} "
    if not (made.key.startswith(prefix) and made.key.endswith(")s")):
        raise LookupError(f"an anonymous parameter is named {made.key!r}")
    body = made.key[len(prefix):-2]
    state = {k: v for k, v in made.__dict__.items() if k not in _BIND_OWN}
    return column.type, state, body, "_anon_map_key" in made.__dict__


def _binary(left: Any, right: Any, op: Any, type_: Any, negate: Any,
            modifiers: dict[str, Any] | None) -> Any:
    """``BinaryExpression(left, right, op, type_=, negate=, modifiers=)`` of a column and a value.

    The same attributes its constructor sets; both sides are ones its
    ``self_group(against=op)`` returns unchanged (a column, a parameter,
    between's ungrouped list), which the probe checks.
    """
    if not _copying:
        return BinaryExpression(left, right, op, type_=type_, negate=negate, modifiers=modifiers)
    expr = _new(BinaryExpression)
    expr.__dict__.update(
        left=left, right=right, operator=op, type=type_, negate=negate,
        modifiers={} if modifiers is None else modifiers,
        _orig=(left.__hash__(), right.__hash__()),
        _propagate_attrs=left._propagate_attrs or right._propagate_attrs,
        _is_implicitly_boolean=_is_boolean(op))
    return expr


# per operator: is_boolean() of one that is no comparison asks a Protocol's isinstance
# (about a microsecond); the operators here are the module's own functions, fixed
_boolean: dict[Any, bool] = {}


def _is_boolean(op: Any) -> bool:
    found = _boolean.get(op)
    if found is None:
        found = _boolean[op] = operators.is_boolean(op)
    return found


_copying = _anonymous_label is not None


def copying(on: bool) -> None:
    """Build by copying attributes (``on``), or through the constructors (the probe's other half)."""
    global _copying
    _copying = on and _anonymous_label is not None
