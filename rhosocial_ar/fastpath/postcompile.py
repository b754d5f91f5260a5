"""SQLAlchemy's rendering of a positional statement's IN lists, kept per list lengths.

    found = postcompile.statement(compiled, {'w0': [1, 2, 3], 'w1': 'x'})
    # ('... IN ($2::INTEGER, $3::INTEGER, $4::INTEGER) AND title = $1::VARCHAR', ('x', 1, 2, 3))

SQLAlchemy renders an expanding parameter anew on every execution
(``_process_parameters_for_postcompile``, which execution.py already relies
on): for numeric paramstyles (asyncpg's ``$1::INTEGER``), which
``placeholders.py`` leaves to it, tens of calls per list. What it renders
depends only on the lists' lengths, so its SQL and the order of its
parameters are kept per lengths and the values put in that order. Lists
whose rendering depends on their values (empty ones, tuples, literal
execution) are left to it.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

__all__ = ["statement"]

_LIMIT = 16      # plans per statement: the list lengths seen lately
# compiled statement -> (its expanding parameter names, {lengths: plan or None})
_plans: weakref.WeakKeyDictionary[Any, tuple[tuple[str, ...], dict[tuple[int, ...], Any]]] = (
    weakref.WeakKeyDictionary())


def statement(compiled: Any, by_name: dict[str, Any]) -> tuple[str, tuple[Any, ...]] | None:
    """The SQL and positional arguments SQLAlchemy would send, or None to let it render them."""
    known = _plans.get(compiled)
    if known is None:
        if compiled.literal_execute_params or not compiled.positional:
            return None
        names = tuple(compiled.bind_names[bind] for bind in compiled.post_compile_params)
        known = _plans[compiled] = (names, {})
    names, plans = known
    lengths = []
    for name in names:
        values = by_name.get(name)
        if type(values) not in (list, tuple) or not values or (
                isinstance(values[0], Sequence) and not isinstance(values[0], str | bytes)):
            return None
        lengths.append(len(values))
    key = tuple(lengths)
    plan = plans.get(key, False)
    if plan is False:
        if len(plans) >= _LIMIT:
            plans.clear()
        plan = plans[key] = _plan(compiled, by_name, names, key)
    if plan is None:
        return None
    sql, entries = plan
    arguments = []
    for name, index, process in entries:
        value = by_name[name] if index < 0 else by_name[name][index]
        arguments.append(value if process is None else process(value))
    return sql, tuple(arguments)


def _plan(compiled: Any, by_name: dict[str, Any], names: tuple[str, ...],
          lengths: tuple[int, ...]) -> tuple[str, tuple[tuple[str, int, Any], ...]] | None:
    """SQLAlchemy's SQL for these lengths and, per placeholder, (parameter, list index or -1,
    processor); None when its parameters are not the expected ``name_1``, ``name_2``, ..."""
    state = compiled._process_parameters_for_postcompile(dict(by_name))   # it edits the dict
    expanded = {f"{name}_{i}": (name, i - 1)
                for name, length in zip(names, lengths, strict=True) for i in range(1, length + 1)}
    processors = state.processors
    entries = []
    for placeholder in state.positiontup:
        if placeholder in expanded:
            name, index = expanded[placeholder]
        elif placeholder in by_name and placeholder not in names:
            name, index = placeholder, -1
        else:
            return None
        entries.append((name, index, processors.get(placeholder)))
    return state.statement, tuple(entries)
