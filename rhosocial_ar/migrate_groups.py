"""The chains that run on many databases: one per shard group, one for the tenant models.

    group = find_group('Invoice')       # a sharded model's name, or a group's name
    group.name, group.shards            # 'invoices', ('s0', 's1', 's2')
    group.metadata()                    # a MetaData holding the group's tables
    tenant_metadata()                   # the tables of every TenantModel

A sharded model belongs to the group its ``__shard_group__`` names (by default
its table's name); the models of a group share one chain of migrations,
``DIR/shards/<group>/versions/``, run on every shard. The tenant models share
``DIR/tenants/versions/``, run in every tenant's database or schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from . import registry
from .errors import MigrationError

__all__ = ["RESERVED", "SHARDS_DIR", "TENANTS_DIR", "ShardGroup", "find_group", "group_name",
           "shard_groups", "sharded_tables", "tenant_metadata", "tenant_placeholder"]

SHARDS_DIR = "shards"
TENANTS_DIR = "tenants"
# directories below DIR that are not a connection's chain
RESERVED = frozenset({SHARDS_DIR, TENANTS_DIR})

_GROUP = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


@dataclass(frozen=True)
class ShardGroup:
    """Sharded models migrated together: one chain, run on each of their shards."""

    name: str
    shards: tuple[str, ...]
    models: tuple[Any, ...]

    def metadata(self) -> sa.MetaData:
        """A MetaData with a copy of each model's table (sharded tables are in no connection's)."""
        metadata = sa.MetaData(naming_convention=registry.NAMING_CONVENTION)
        for model in self.models:
            model.__table__.to_metadata(metadata)
        return metadata


def group_name(model: Any) -> str:
    """The group of a sharded model: its ``__shard_group__``, else its table's name."""
    name = getattr(model, "__shard_group__", None) or model.__table__.name
    if not isinstance(name, str) or not _GROUP.match(name):
        raise MigrationError(f"{model.__name__}.__shard_group__ {name!r} cannot name a migrations "
                             f"directory; use letters, digits, '_', '.' and '-'")
    return name


def _sharded() -> list[Any]:
    """Every sharded model declared so far; a table declared again (a module imported twice,
    a docs example run again) counts once, by its newest model."""
    newest: dict[str, Any] = {}
    for model in registry.all_models():
        if getattr(model, "__shards__", None) is not None and "__table__" in model.__dict__:
            newest[model.__table__.key] = model
    return list(newest.values())


def shard_groups() -> dict[str, ShardGroup]:
    """Every shard group by name; the models of one group must name the same shards."""
    members: dict[str, list[Any]] = {}
    for model in _sharded():
        members.setdefault(group_name(model), []).append(model)
    groups = {}
    for name, models in sorted(members.items()):
        by_table = {m.__table__.key: m for m in models}     # one model per table
        shard_lists = {tuple(m.__shards__) for m in by_table.values()}
        if len(shard_lists) > 1:
            listed = ", ".join(f"{m.__name__} {list(m.__shards__)}" for m in by_table.values())
            raise MigrationError(f"the models of shard group {name!r} name different shards "
                                 f"({listed}); one chain runs on one list of shards")
        groups[name] = ShardGroup(name, shard_lists.pop(), tuple(by_table.values()))
    return groups


def find_group(name: str) -> ShardGroup:
    """The group named ``name``, or the group of the sharded model named ``name``."""
    groups = shard_groups()
    by_model = [m for m in registry.models_named(name) if not m.__dict__.get("__abstract__", False)]
    sharded = [m for m in by_model if getattr(m, "__shards__", None) is not None]
    if name in groups:
        if sharded and group_name(sharded[-1]) != name:
            raise MigrationError(f"{name!r} names both the shard group {name!r} and the model "
                                 f"{name}, of group {group_name(sharded[-1])!r}: give the group")
        return groups[name]
    if sharded:
        return groups[group_name(sharded[-1])]
    if by_model:
        model = by_model[-1]
        raise MigrationError(f"{name} is not sharded (no __shards__): migrate its connection with "
                             f"`rhosocial-ar db upgrade -c {model.__connection__}`")
    known = ", ".join(sorted(groups)) or "none (no model declares __shards__)"
    raise MigrationError(f"no sharded model or shard group named {name!r}; shard groups: {known}")


def sharded_tables() -> set[str]:
    """The table keys of every sharded model: no connection's chain creates or drops them."""
    return {m.__table__.key for m in _sharded()}


def tenant_placeholder() -> str:
    """The ``__connection__`` of every tenant model: no configured connection's name."""
    from .tenants import NO_TENANT  # tenants.py sits on the model layer; imported when asked

    return NO_TENANT


def tenant_metadata() -> sa.MetaData:
    """The tables of the tenant models."""
    return registry.tables_by_connection().get(tenant_placeholder()) or sa.MetaData()
