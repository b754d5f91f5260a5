"""One rule, no exceptions: every public operation that talks to a database has an ``a`` twin.

The twin has the same name with an ``a`` in front and the same parameters
(names, kinds, defaults, annotations), and is awaitable (``abatch``: an async
iterator; ``atransaction``: an async context manager). A new public method
fails here until it gets its twin, or is listed below as one that sends nothing.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest
from pydantic import BaseModel

import rhosocial_ar
from rhosocial_ar import ActiveRecord, ConnectionManager, Query, Transaction, two_phase
from rhosocial_ar.relation import Accessor
from rhosocial_ar.statements import Compound
from rhosocial_ar.twophase import TwoPhaseTransaction

# public methods that describe or route and send nothing to a database, besides the
# builders: those that return a new query (annotated ``Query[...]`` or ``Compound[...]``)
SENDS_NOTHING = {
    ActiveRecord: {
        "using_connection", "primary_key",
        "relations", "relation", "to_dict", "changed_columns", "is_new_record",
        # hooks: run by the operations, inside the awaited ones too
        "before_validate", "before_save", "before_create", "before_update", "before_destroy",
        "after_create", "after_update", "after_save", "after_destroy", "after_commit",
        "after_rollback",
    },
    Query: {"to_sql", "statement", "subquery", "cte"},
    Compound: {"model", "statement", "subquery"},
    # __call__: the decorator, which wraps a coroutine function in ``async with`` itself
    Transaction: {"detach", "sa_connection", "__call__"},
    TwoPhaseTransaction: {"detach", "sa_connection", "__call__"},
    two_phase: set(),
    Accessor: {"query"},
    ConnectionManager: {"configure", "get", "names", "connections"},
}
# sync forms whose twin is not spelled 'a' + name
SPELLED = {"__enter__": "__aenter__", "__exit__": "__aexit__", "__call__": "aload"}
# twins that are not coroutine functions, and what they return
NOT_COROUTINES = {"abatch": "an async iterator", "atransaction": "an async context manager"}


_PYDANTIC = set(dir(BaseModel))


def public_methods(cls: type) -> dict[str, Any]:
    """The public names the class and its bases (not pydantic's, not object's) define."""
    found: dict[str, Any] = {}
    for klass in cls.__mro__:
        if klass in (object, BaseModel) or klass.__module__.startswith(("pydantic", "typing")):
            continue
        for name, value in vars(klass).items():
            if name in _PYDANTIC or inspect.ismemberdescriptor(value):   # pydantic's; __slots__
                continue
            if not name.startswith("_") or name in SPELLED:
                found.setdefault(name, value)
    return found


def operations(cls: type) -> list[tuple[str, str]]:
    """(sync name, twin name) of every public operation that talks to a database."""
    names = public_methods(cls)
    twins = {n for n in names if n.startswith("a") and n[1:] in names} | {"aload"}
    return sorted((name, SPELLED.get(name, "a" + name)) for name in names
                  if name not in twins and name not in SENDS_NOTHING[cls] and not builds(names[name])
                  and (name not in SPELLED or name in vars(cls)))


def builds(method: Any) -> bool:
    """A builder: it returns a new query, which sends nothing until it runs."""
    function = getattr(method, "__func__", method)
    returns = str(getattr(function, "__annotations__", {}).get("return", ""))
    return re.match(r"(\w+\.)?(Query|Compound)\[", returns) is not None


CASES = [(cls, sync, twin) for cls in SENDS_NOTHING for sync, twin in operations(cls)]
# the package's functions that talk to a database
FUNCTIONS = ["recover", "transfer"]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_has_its_awaitable_twin(name: str) -> None:
    sync, twin = getattr(rhosocial_ar, name), getattr(rhosocial_ar, "a" + name, None)
    assert twin is not None and "a" + name in rhosocial_ar.__all__, f"rhosocial_ar.a{name} is missing"
    assert inspect.signature(twin).parameters == inspect.signature(sync).parameters
    assert inspect.iscoroutinefunction(twin), f"a{name} is not awaitable"


def test_the_functions_listed_are_every_public_one_that_talks_to_a_database() -> None:
    """A new public function of the package is either listed above or sends nothing."""
    sends_nothing = {"Field", "get_connection", "request_scope", "two_phase",
                     # issue 21: a mapping, a registration and a routing block
                     "shard_of", "register_tenants", "register_tenant_schemas", "tenant",
                     # a deploy step on sync connections, as migrations are (docs/async.md)
                     "rebalance"}
    functions = {name for name in rhosocial_ar.__all__ if inspect.isfunction(getattr(rhosocial_ar, name))
                 and not name.startswith("a")}
    assert functions - sends_nothing == set(FUNCTIONS)


@pytest.mark.parametrize(("cls", "sync", "twin"), CASES,
                         ids=[f"{cls.__name__}.{sync}" for cls, sync, _ in CASES])
def test_each_operation_has_its_awaitable_twin(cls: type, sync: str, twin: str) -> None:
    assert hasattr(cls, twin), (
        f"{cls.__name__}.{sync} talks to a database but has no {twin}(); add it (docs/async.md), "
        f"or list {sync!r} in SENDS_NOTHING if it sends nothing")
    sync_params = list(inspect.signature(getattr(cls, sync)).parameters.values())
    twin_params = list(inspect.signature(getattr(cls, twin)).parameters.values())
    assert twin_params == sync_params, f"{cls.__name__}.{twin} differs from {sync} in its parameters"
    function = inspect.unwrap(getattr(cls, twin))
    if twin in NOT_COROUTINES:
        assert not inspect.iscoroutinefunction(function), f"{twin} returns {NOT_COROUTINES[twin]}"
    else:
        assert inspect.iscoroutinefunction(function), f"{cls.__name__}.{twin} is not awaitable"


def test_the_enumeration_finds_the_operations_of_the_issue() -> None:
    """The operations issue 20 names, so an enumeration that finds nothing cannot pass."""
    found = {(cls.__name__, sync) for cls, sync, _ in CASES}
    named = {("ActiveRecord", n) for n in (
        "find", "find_by", "create", "save", "delete", "refresh", "raw_query", "bulk_insert",
        "insert_or_update", "bulk_insert_or_update", "transaction")}
    named |= {("Query", n) for n in (
        "all", "first", "count", "sum", "pluck", "exists", "update", "delete", "batch")}
    named |= {("Transaction", "__enter__"), ("Accessor", "__call__"), ("two_phase", "__enter__")}
    named |= {("TwoPhaseTransaction", n) for n in ("prepare", "commit", "rollback", "abandon")}
    assert named <= found, sorted(named - found)


def test_a_sync_method_of_the_list_that_sends_nothing_exists() -> None:
    """The exemption list names only methods that are there (a rename would hide a new one)."""
    for cls, names in SENDS_NOTHING.items():
        missing = sorted(n for n in names if n not in public_methods(cls))
        assert not missing, f"{cls.__name__}: no such methods {missing}"
