"""Tenants: a database (or a schema) per tenant, chosen for a block.

    register_tenants(lambda tenant_id: {'url': f'postgresql+psycopg2://app@db/{tenant_id}'},
                     max_open=50)         # or None for a tenant it does not know

    class Project(IntegerPKMixin, TenantModel):
        name: str

    with tenant('acme'):                  # every TenantModel in the block: acme's database
        Project.create(name='launch')

A tenant's connection (named ``tenant:<id>``) is made the first time a block
names it, and at most ``max_open`` are kept: beyond that the least recently
used one that no block is using is disposed, so a thousand tenants do not hold
a thousand pools. ``register_tenant_schemas('main')`` gives the same API on
one connection, each tenant a schema (``schema_translate_map``, one pool).
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

from . import routing
from .connections import ConnectionManager, forget, get_connection
from .errors import ConfigurationError, QueryError, UnknownTenant
from .model import ActiveRecord

__all__ = ["TenantModel", "register_tenant_schemas", "register_tenants", "tenant"]

# the connection a tenant model names outside any tenant() block: not configured, so the
# first statement fails with this name in the error, before anything is sent
NO_TENANT = "(no tenant chosen: wrap the work in `with tenant(tenant_id):`)"

_PREFIX = "tenant:"
Resolver = Callable[[str], "Mapping[str, Any] | str | None"]
# the tenants that exist, for what acts on each (rhosocial-ar db upgrade --tenants)
TenantList = Iterable[str] | Callable[[], Iterable[str]]


class TenantModel(ActiveRecord):
    """Base of the models that live in each tenant's database (or schema)."""

    __abstract__: ClassVar[bool] = True
    __connection__: ClassVar[str] = NO_TENANT

    def _ar_connection(self) -> Any:
        """Where the record writes; never another tenant's database than it came from."""
        origin, chosen = self._ar_origin, routing.override_for(type(self))
        if origin is not None and chosen is not None and origin != chosen:
            raise QueryError(
                f"this {type(self).__name__} belongs to {_tenant_of(origin)}; writing it inside "
                f"the block of {_tenant_of(chosen)} would put it in another tenant's database "
                f"(nothing was written)")
        return super()._ar_connection()


def _tenant_of(name: str) -> str:
    return f"tenant {name[len(_PREFIX):]!r}" if name.startswith(_PREFIX) else f"connection {name!r}"


class _Registry:
    """The resolver and the tenants' open connections, least recently used first."""

    def __init__(self, make: Callable[[str], Mapping[str, Any] | None], max_open: int,
                 listed: TenantList | None = None,
                 schema: Callable[[str], str] | None = None) -> None:
        if not isinstance(max_open, int) or isinstance(max_open, bool) or max_open < 1:
            raise ConfigurationError(f"max_open must be a positive integer, not {max_open!r}")
        self.make = make
        self.max_open = max_open
        # a one-shot iterable (a generator) is kept as a tuple; a function is asked each time
        self.listed = listed if listed is None or callable(listed) else _ids(listed)
        self.schema = schema
        self.open: OrderedDict[str, str] = OrderedDict()
        self.in_use: Counter[str] = Counter()
        self.lock = threading.Lock()

    def acquire(self, tenant_id: str) -> str:
        """The connection name of a tenant, configured if new; held until ``release``."""
        with self.lock:
            name = self.open.get(tenant_id)
            if name is None:
                config = self.make(tenant_id)
                if config is None:
                    raise UnknownTenant(f"unknown tenant {tenant_id!r}: the tenant resolver has "
                                        f"no database for it; nothing was sent")
                name = f"{_PREFIX}{tenant_id}"
                ConnectionManager.configure(name, config)
                self.open[tenant_id] = name
            self.open.move_to_end(tenant_id)
            self.in_use[tenant_id] += 1
            evicted = self._over_limit()
        for old in evicted:       # outside the lock: disposing closes sockets
            forget(old)
        return name

    def release(self, tenant_id: str) -> None:
        with self.lock:
            self.in_use[tenant_id] -= 1
            if self.in_use[tenant_id] <= 0:
                del self.in_use[tenant_id]
            evicted = self._over_limit()
        for old in evicted:
            forget(old)

    def _over_limit(self) -> list[str]:
        """Drop the least recently used idle tenants beyond ``max_open``; their names."""
        evicted = []
        for tenant_id in list(self.open):
            if len(self.open) <= self.max_open:
                break
            if not self.in_use[tenant_id]:      # a block still uses it: kept for now
                evicted.append(self.open.pop(tenant_id))
        return evicted

    def close(self) -> None:
        with self.lock:
            names, self.open = list(self.open.values()), OrderedDict()
        for name in names:
            forget(name)


_registry: _Registry | None = None


def _install(registry: _Registry) -> None:
    global _registry
    if _registry is not None:
        _registry.close()
    _registry = registry


def _ids(tenants: Iterable[str]) -> tuple[str, ...]:
    ids = sorted(tenants) if isinstance(tenants, set | frozenset) else list(tenants)
    if not all(isinstance(t, str) and t for t in ids):
        raise ConfigurationError(f"tenant ids are non-empty strings, not {ids!r}")
    return tuple(ids)


def register_tenants(resolver: Resolver, *, max_open: int = 32, tenants: TenantList | None = None) -> None:
    """Database per tenant: ``resolver(tenant_id)`` gives a connection config (a dict as for
    ``ConnectionManager.configure``, or a URL), or None for an unknown tenant. ``tenants``
    (ids, or a function returning them) lists every tenant, for ``db upgrade --tenants``."""

    def make(tenant_id: str) -> Mapping[str, Any] | None:
        found = resolver(tenant_id)
        return {"url": found} if isinstance(found, str) else found

    _install(_Registry(make, max_open, tenants))


def register_tenant_schemas(connection: str, *, schema: Callable[[str], str] | None = None,
                            known: Collection[str] | Callable[[str], bool] | None = None,
                            max_open: int = 256, tenants: TenantList | None = None) -> None:
    """Schema per tenant on one connection: its tables' schema becomes ``schema(tenant_id)``
    (the id itself by default) through ``schema_translate_map``; ``known`` lists the tenants
    (or says whether one is known), else every id is. ``tenants`` lists them for
    ``db upgrade --tenants`` when ``known`` is a function or absent."""
    base = get_connection(connection)      # fail now, not at the first tenant

    def is_known(tenant_id: str) -> bool:
        if known is None:
            return True
        return known(tenant_id) if callable(known) else tenant_id in known

    def schema_of(tenant_id: str) -> str:
        return schema(tenant_id) if schema is not None else tenant_id

    def make(tenant_id: str) -> Mapping[str, Any] | None:
        if not is_known(tenant_id):
            return None
        # an option view of the one engine: the pool is shared, nothing to dispose
        return {"engine": base.engine.execution_options(
                    schema_translate_map={None: schema_of(tenant_id)}),
                "read_only": base.read_only}

    if tenants is None and known is not None and not callable(known):
        tenants = known
    _install(_Registry(make, max_open, tenants, schema_of))


def listed_tenants() -> list[str]:
    """Every tenant, as ``tenants=`` (or ``known``) of the registration lists them."""
    if _registry is None:
        raise ConfigurationError("no tenants registered; call register_tenants() or "
                                 "register_tenant_schemas() first")
    listed = _registry.listed
    if listed is None:
        raise ConfigurationError("the tenants were registered without a list of them: give "
                                 "register_tenants(..., tenants=ids or a function returning them)")
    return list(_ids(listed() if callable(listed) else listed))


def tenant_schema(tenant_id: str) -> str | None:
    """The schema of a tenant when each tenant is a schema (register_tenant_schemas), else None."""
    return _registry.schema(tenant_id) if _registry is not None and _registry.schema else None


def open_tenants() -> list[str]:
    """The tenants whose connections are open, least recently used first."""
    return list(_registry.open) if _registry is not None else []


@contextmanager
def tenant(tenant_id: str) -> Iterator[None]:
    """Route every ``TenantModel`` to this tenant's database (or schema) in the block."""
    if _registry is None:
        raise ConfigurationError("tenant(): no tenants registered; call register_tenants() or "
                                 "register_tenant_schemas() first")
    if not isinstance(tenant_id, str) or not tenant_id:
        raise ConfigurationError(f"a tenant id is a non-empty string, not {tenant_id!r}")
    registry = _registry
    name = registry.acquire(tenant_id)
    try:
        with routing.using_connection(TenantModel, name):
            yield
    finally:
        registry.release(tenant_id)
