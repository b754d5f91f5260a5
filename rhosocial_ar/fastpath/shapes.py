"""A SQLAlchemy condition's shape and its values, so equal shapes share one statement.

    key, binds = shape_of(User.c.age > 30)
    key == shape_of(User.c.age > 40)[0]          # True
    [b.effective_value for b in binds]           # [30]

The key is SQLAlchemy's own cache key (what its compiled cache is keyed
on); the bound parameters come in the same order for every expression of
the key, so a statement built from the first one runs with the values of
any other.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

__all__ = ["shape_of"]


def shape_of(expr: Any) -> tuple[Hashable, tuple[Any, ...]] | None:
    """``(key, bound parameters)``, or None for an expression SQLAlchemy does not cache."""
    try:
        found = expr._generate_cache_key()
    except AttributeError:    # not a ClauseElement, or a SQLAlchemy without it
        return None
    if found is None:
        return None
    binds = tuple(found.bindparams)
    # a parameter without a value must fail as SQLAlchemy fails it, not run with None
    if any(bind.required for bind in binds):
        return None
    return found.key, binds
