"""One chain of migrations run on many databases: every shard of a shard group, every tenant.

    from rhosocial_ar import migrate_many

    migrate_many.revision_shards('Invoice', 'invoices', autogenerate=True)   # against the first shard
    report = migrate_many.upgrade_shards('Invoice')    # shard after shard; stops at a failure
    report.results['s0'].after                         # ('3f2a9c1b7d4e',)
    report = migrate_many.upgrade_tenants()            # every listed tenant, a bar, failures kept
    report.raise_if_failed()                           # MigrationError naming the failed ones

A shard group's chain lives in ``DIR/shards/<group>/versions/`` and each shard
records its place in ``alembic_version_shards_<group>``; the tenants' chain in
``DIR/tenants/versions/`` and ``alembic_version_tenants`` (in the tenant's
schema with a schema per tenant). Every run can be repeated: a database
already at the target is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from . import migrate, routing
from .connections import get_connection
from .errors import (
    ARError,
    ConfigurationError,
    MigrationError,
    ReadOnlyError,
    UnknownTenant,
    describe_error,
)
from .migrate import DEFAULT_DIRECTORY, Chain, PathLike
from .migrate_groups import SHARDS_DIR, TENANTS_DIR, ShardGroup, find_group, tenant_metadata
from .tenants import TenantModel, listed_tenants, tenant, tenant_schema

__all__ = [
    "Outcome", "Report", "check_shards", "check_tenants", "current_shards", "current_tenants",
    "downgrade_shards", "downgrade_tenants", "heads_shards", "heads_tenants", "history_shards",
    "history_tenants", "revision_shards", "revision_tenants", "shard_chain", "stamp_shards",
    "stamp_tenants", "tenant_chain", "upgrade_shards", "upgrade_tenants",
]

TENANT_VERSION_TABLE = "alembic_version_tenants"
_SCHEMA_COMPARE = (
    "{what} compares with a tenant's database, and Alembic reflects the default schema, not a "
    "tenant's: with a schema per tenant, write revisions without --autogenerate, or autogenerate "
    "them with a database per tenant (e.g. SQLite files)")


@dataclass(frozen=True)
class Outcome:
    """What one run did on one shard (its connection name) or tenant (its id)."""

    target: str
    before: tuple[str, ...] | None        # None: not read (the database could not be reached)
    after: tuple[str, ...] | None
    error: Exception | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def changed(self) -> bool:
        return self.error is None and self.before != self.after


@dataclass
class Report:
    """Each target's outcome in run order, and the shards a failure left untouched."""

    what: str                                  # "shard group 'invoices'", 'the tenants'
    results: dict[str, Outcome] = field(default_factory=dict)
    not_run: list[str] = field(default_factory=list)

    @property
    def failed(self) -> dict[str, Outcome]:
        return {name: o for name, o in self.results.items() if o.failed}

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_run

    def raise_if_failed(self) -> None:
        """``MigrationError`` naming each failed target (the first failure is the cause)."""
        if self.ok:
            return
        errors = {name: o.error for name, o in self.results.items() if o.error is not None}
        text = (f"{self.what}: {len(errors)} of {len(self.results) + len(self.not_run)} failed: "
                + "; ".join(f"{name!r}: {describe_error(error)}" for name, error in errors.items()))
        if self.not_run:
            text += f"; not run: {', '.join(map(repr, self.not_run))}"
        raise MigrationError(text) from next(iter(errors.values()))


# what a caller may watch: the target about to run, then its outcome
OnStart = Callable[[str], None]
OnResult = Callable[[Outcome], None]


# -- chains ---------------------------------------------------------------------------------

def shard_chain(group: ShardGroup | str) -> Chain:
    """The chain of a shard group (or of the group of a sharded model's name)."""
    found = find_group(group) if isinstance(group, str) else group
    return Chain(path=f"{SHARDS_DIR}/{found.name}",
                 version_table=migrate.version_table(f"{SHARDS_DIR}_{found.name}"),
                 metadata=found.metadata(), option=f"--shards {found.name}",
                 label=f"shard group {found.name!r}")


def tenant_chain(schema: str | None = None) -> Chain:
    """The chain of the tenant models; ``schema``: where a tenant's version table lives."""
    return Chain(path=TENANTS_DIR, version_table=TENANT_VERSION_TABLE, metadata=tenant_metadata(),
                 option="--tenants", label="the tenants", schema=schema)


# -- shards ---------------------------------------------------------------------------------

def _shards(group: str, writes: bool) -> tuple[ShardGroup, Chain]:
    """The group and its chain, every shard checked before any is touched."""
    found = find_group(group)
    for name in found.shards:
        connection = get_connection(name)        # ConnectionNotFound for a shard not configured
        if writes and connection.read_only:
            raise ReadOnlyError(f"shard {name!r} of {found.name!r} is read-only; migrations "
                                f"write to its database")
    return found, shard_chain(found)


def _on_shards(group: str, directory: PathLike, step: Callable[[str, Chain], tuple[str, ...]],
               writes: bool, on_start: OnStart | None, on_result: OnResult | None) -> Report:
    found, chain = _shards(group, writes)
    migrate.heads(found.shards[0], directory, chain=chain)   # no chain yet: an error, nothing run
    report = Report(chain.label)
    for index, name in enumerate(found.shards):
        outcome = _run(name, name, chain, step, on_start, on_result)
        report.results[name] = outcome
        if outcome.failed:      # the rest stay as they are, so the run can be repeated
            report.not_run = list(found.shards[index + 1:])
            break
    return report


def upgrade_shards(group: str, revision: str = "head", directory: PathLike = DEFAULT_DIRECTORY, *,
                   on_start: OnStart | None = None, on_result: OnResult | None = None) -> Report:
    """Upgrade every shard of ``group`` (a shard group or a sharded model's name), in the order
    of ``__shards__``; the first shard that fails stops the run, the later ones are not touched."""
    return _on_shards(group, directory, lambda n, c: migrate.upgrade(n, revision, directory, chain=c),
                      True, on_start, on_result)


def downgrade_shards(group: str, revision: str, directory: PathLike = DEFAULT_DIRECTORY, *,
                     on_start: OnStart | None = None, on_result: OnResult | None = None) -> Report:
    """:func:`upgrade_shards`, downwards."""
    return _on_shards(group, directory, lambda n, c: migrate.downgrade(n, revision, directory, chain=c),
                      True, on_start, on_result)


def stamp_shards(group: str, revision: str, directory: PathLike = DEFAULT_DIRECTORY, *,
                 on_start: OnStart | None = None, on_result: OnResult | None = None) -> Report:
    """Record ``revision`` on every shard without running migrations."""
    return _on_shards(group, directory, lambda n, c: migrate.stamp(n, revision, directory, chain=c),
                      True, on_start, on_result)


def current_shards(group: str, directory: PathLike = DEFAULT_DIRECTORY) -> Report:
    """Where each shard is (``after`` of each outcome); stops at a shard that cannot be read."""
    return _on_shards(group, directory, lambda n, c: migrate.current(n, chain=c), False, None, None)


def revision_shards(group: str, message: str, autogenerate: bool = False,
                    directory: PathLike = DEFAULT_DIRECTORY) -> Path | None:
    """Write a revision in the group's chain. Autogenerate compares the group's models with the
    **first** shard of ``__shards__``, which must be at the chain's head."""
    found, chain = _shards(group, writes=False)
    return migrate.revision(found.shards[0], message, autogenerate, directory, chain=chain)


def check_shards(group: str, directory: PathLike = DEFAULT_DIRECTORY) -> dict[str, list[str]]:
    """:func:`rhosocial_ar.migrate.check` on every shard: its differences, [] when it agrees
    (a shard that cannot be read has its error as its one difference)."""
    found, chain = _shards(group, writes=False)
    migrate.heads(found.shards[0], directory, chain=chain)   # no chain yet: an error
    return {name: _check(name, directory, chain) for name in found.shards}


def _check(name: str, directory: PathLike, chain: Chain) -> list[str]:
    try:
        return migrate.check(name, directory, chain=chain)
    except (ARError, sa.exc.SQLAlchemyError) as exc:     # this database's answer, not the run's
        return [describe_error(exc)]


def heads_shards(group: str, directory: PathLike = DEFAULT_DIRECTORY) -> tuple[str, ...]:
    found, chain = _shards(group, writes=False)
    return migrate.heads(found.shards[0], directory, chain=chain)


def history_shards(group: str, directory: PathLike = DEFAULT_DIRECTORY) -> list[migrate.RevisionInfo]:
    found, chain = _shards(group, writes=False)
    return migrate.history(found.shards[0], directory, chain=chain)


# -- tenants --------------------------------------------------------------------------------

def _tenant_ids(tenants: Iterable[str] | None) -> list[str]:
    try:
        ids = list(tenants) if tenants is not None else listed_tenants()
    except ConfigurationError as exc:
        raise MigrationError(f"db --tenants: {exc}") from exc
    if not ids:
        raise MigrationError("db --tenants: the tenant list is empty; nothing to migrate")
    bad = [t for t in ids if not isinstance(t, str) or not t]
    if bad:
        raise MigrationError(f"tenant ids are non-empty strings, not {bad!r}")
    return ids


@contextmanager
def _in_tenant(tenant_id: str) -> Iterator[tuple[str, Chain]]:
    """The tenant's connection name and the chain as it runs there."""
    with tenant(tenant_id):
        name = routing.override_for(TenantModel)
        assert name is not None    # tenant() pins TenantModel to the tenant's connection
        yield name, tenant_chain(tenant_schema(tenant_id))


def _ensure_schema(name: str, schema: str | None) -> None:
    """A tenant's schema is made by its first migration run (Alembic makes no schema)."""
    if schema is None:
        return
    with get_connection(name).engine.begin() as connection:
        if not sa.inspect(connection).has_schema(schema):
            connection.execute(sa.schema.CreateSchema(schema))


def _on_tenants(tenants: Iterable[str] | None, directory: PathLike,
                step: Callable[[str, Chain], tuple[str, ...]], writes: bool, progress: bool,
                on_start: OnStart | None, on_result: OnResult | None) -> Report:
    ids = _tenant_ids(tenants)
    _require_chain(ids, directory)
    report = Report("the tenants")
    bar = _progress(len(ids), progress)
    try:
        for tenant_id in ids:
            report.results[tenant_id] = _run_tenant(tenant_id, step, writes, on_start, on_result)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(failed=len(report.failed), refresh=False)
    finally:
        if bar is not None:
            bar.close()
    return report


def _require_chain(ids: list[str], directory: PathLike) -> None:
    """No tenants' chain yet: an error before any tenant is touched (read through the first
    tenant the resolver knows; one it does not know is that tenant's failure, reported later)."""
    for tenant_id in ids:
        try:
            with _in_tenant(tenant_id) as (name, chain):
                migrate.heads(name, directory, chain=chain)
                return
        except UnknownTenant:
            continue


def _run_tenant(tenant_id: str, step: Callable[[str, Chain], tuple[str, ...]], writes: bool,
                on_start: OnStart | None, on_result: OnResult | None) -> Outcome:
    try:
        with _in_tenant(tenant_id) as (name, chain):
            if writes:
                _ensure_schema(name, chain.schema)
            return _run(tenant_id, name, chain, step, on_start, on_result)
    except (ARError, sa.exc.SQLAlchemyError) as exc:   # an unknown tenant, its schema not made
        outcome = Outcome(tenant_id, None, None, exc)
        if on_result is not None:
            on_result(outcome)
        return outcome


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    # as transfer(): disable=None shows a bar on a terminal, nothing in a file or pipe
    return tqdm(total=total, unit="tenant", desc="tenants", disable=None, leave=True)


def upgrade_tenants(revision: str = "head", directory: PathLike = DEFAULT_DIRECTORY, *,
                    tenants: Iterable[str] | None = None, progress: bool = True,
                    on_start: OnStart | None = None, on_result: OnResult | None = None) -> Report:
    """Upgrade every tenant (``tenants``, else the registered list), each in its database or
    schema. A tenant that fails is reported and the others still run; run again once fixed."""
    return _on_tenants(tenants, directory, lambda n, c: migrate.upgrade(n, revision, directory, chain=c),
                       True, progress, on_start, on_result)


def downgrade_tenants(revision: str, directory: PathLike = DEFAULT_DIRECTORY, *,
                      tenants: Iterable[str] | None = None, progress: bool = True,
                      on_start: OnStart | None = None, on_result: OnResult | None = None) -> Report:
    """:func:`upgrade_tenants`, downwards."""
    return _on_tenants(tenants, directory,
                       lambda n, c: migrate.downgrade(n, revision, directory, chain=c),
                       True, progress, on_start, on_result)


def stamp_tenants(revision: str, directory: PathLike = DEFAULT_DIRECTORY, *,
                  tenants: Iterable[str] | None = None, progress: bool = True,
                  on_start: OnStart | None = None, on_result: OnResult | None = None) -> Report:
    """Record ``revision`` for every tenant without running migrations."""
    return _on_tenants(tenants, directory, lambda n, c: migrate.stamp(n, revision, directory, chain=c),
                       True, progress, on_start, on_result)


def current_tenants(directory: PathLike = DEFAULT_DIRECTORY, *,
                    tenants: Iterable[str] | None = None) -> Report:
    """Where each tenant is (``after`` of each outcome)."""
    return _on_tenants(tenants, directory, lambda n, c: migrate.current(n, chain=c), False, False,
                       None, None)


def revision_tenants(message: str, autogenerate: bool = False,
                     directory: PathLike = DEFAULT_DIRECTORY, *, tenant_id: str | None = None) -> Path | None:
    """Write a revision in the tenants' chain. Autogenerate compares the tenant models with
    ``tenant_id``'s database (default: the first listed tenant), which must be at the head."""
    chosen = tenant_id if tenant_id is not None else _tenant_ids(None)[0]
    with _in_tenant(chosen) as (name, chain):
        if autogenerate and chain.schema is not None:
            raise MigrationError(_SCHEMA_COMPARE.format(what="autogenerate"))
        return migrate.revision(name, message, autogenerate, directory, chain=chain)


def check_tenants(directory: PathLike = DEFAULT_DIRECTORY, *,
                  tenants: Iterable[str] | None = None) -> dict[str, list[str]]:
    """:func:`check_shards` for every tenant's database (not with a schema per tenant: Alembic
    would compare with the default schema)."""
    ids = _tenant_ids(tenants)
    _require_chain(ids, directory)
    found = {}
    for tenant_id in ids:
        try:
            with _in_tenant(tenant_id) as (name, chain):
                if chain.schema is not None:
                    raise MigrationError(_SCHEMA_COMPARE.format(what="check"))
                found[tenant_id] = _check(name, directory, chain)
        except UnknownTenant as exc:
            found[tenant_id] = [describe_error(exc)]
    return found


def heads_tenants(directory: PathLike = DEFAULT_DIRECTORY) -> tuple[str, ...]:
    with _in_tenant(_tenant_ids(None)[0]) as (name, chain):
        return migrate.heads(name, directory, chain=chain)


def history_tenants(directory: PathLike = DEFAULT_DIRECTORY) -> list[migrate.RevisionInfo]:
    with _in_tenant(_tenant_ids(None)[0]) as (name, chain):
        return migrate.history(name, directory, chain=chain)


# -- one target -----------------------------------------------------------------------------

def _run(target: str, name: str, chain: Chain, step: Callable[[str, Chain], tuple[str, ...]],
         on_start: OnStart | None, on_result: OnResult | None) -> Outcome:
    """``step`` on one connection; a database or library error is this target's outcome."""
    if on_start is not None:
        on_start(target)
    before: tuple[str, ...] | None = None
    try:
        before = migrate.current(name, chain=chain)
        outcome = Outcome(target, before, step(name, chain))
    except sa.exc.SQLAlchemyError as exc:     # reading the version table: no MigrationError yet
        error = MigrationError(f"connection {name!r}: {describe_error(exc)}")
        error.__cause__ = exc
        outcome = Outcome(target, before, None, error)
    except ARError as exc:
        outcome = Outcome(target, before, None, exc)
    if on_result is not None:
        on_result(outcome)
    return outcome
