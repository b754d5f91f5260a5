"""Which connection a model's operation goes to.

    User.using('secondary').all()               # one query chain
    with User.using_connection('secondary'):    # every User operation in the block
        User.create(username='ann')

Overrides live in a ``ContextVar``: per thread and per asyncio task, nested
blocks restore the previous choice on exit, also on exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

from .connections import Connection, get_connection

__all__ = ["connection_name_for", "get_connection", "override_for", "resolve", "using_connection"]

_overrides: ContextVar[Mapping[type, str]] = ContextVar(
    "rhosocial_ar_overrides", default=MappingProxyType({})
)


@contextmanager
def using_connection(model: type, name: str) -> Iterator[None]:
    """Route every operation of ``model`` (and its subclasses) to ``name`` in the block."""
    get_connection(name)  # fail before the block runs, not at the first query
    token = _overrides.set({**_overrides.get(), model: name})
    try:
        yield
    finally:
        _overrides.reset(token)


def override_for(model: Any) -> str | None:
    """The connection a ``using_connection`` block set for ``model``, if any."""
    overrides = _overrides.get()
    if overrides:
        for klass in model.__mro__:
            if klass in overrides:
                return overrides[klass]
    return None


def connection_name_for(model: Any, explicit: str | None = None) -> str:
    """The connection name for ``model``: explicit, then a block override, then its own."""
    if explicit is not None:
        return explicit
    return override_for(model) or model.__connection__


def resolve(model: Any, explicit: str | None = None) -> Connection:
    return get_connection(connection_name_for(model, explicit))
