"""Alembic migrations per connection: one environment, one chain per connection.

    from rhosocial_ar import migrate

    migrate.revision('sales', 'create invoices', autogenerate=True)  # migrations/sales/versions/
    migrate.upgrade('sales')          # runs the 'sales' chain only -> ('3f2a9c1b7d4e',)
    migrate.current('sales')          # ('3f2a9c1b7d4e',)
    migrate.check('sales')            # [] while models and database agree

``migrations/`` holds one ``env.py`` and ``script.py.mako`` for every
connection, and a version directory per connection (``migrations/<name>/versions/``);
each database gets a version table per connection (``alembic_version_<name>``),
so two connections can share a database. Autogenerate compares the tables of
the models whose ``__connection__`` is the connection with that connection's
database and leaves other connections' tables and every version table alone.
Each function here also has an ``*_all`` variant (see :func:`all_names`).
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.operations.ops import DropIndexOp, DropTableOp, ModifyTableOps
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from . import aio, migrate_groups, registry
from .connections import ConnectionManager, get_connection
from .errors import MigrationError, ReadOnlyError, describe_error

__all__ = [
    "DEFAULT_DIRECTORY", "Chain", "RevisionInfo", "all_names", "branches", "check", "check_all", "current",
    "current_all", "describe", "downgrade", "downgrade_all", "downgrade_sql", "heads", "history",
    "init", "merge", "revision", "revision_all", "run_environment", "stamp", "unconfigured_models",
    "upgrade", "upgrade_all", "upgrade_sql", "version_table", "versions_dir",
]

DEFAULT_DIRECTORY = "migrations"
VERSION_TABLE_PREFIX = "alembic_version"
# tables the library keeps itself (the two-phase decision log): never a model's, never dropped
LIBRARY_TABLE_PREFIX = "rhosocial_ar_"
TEMPLATE = Path(__file__).resolve().parent / "templates" / "migrations"
TEMPLATE_FILES = ("env.py", "script.py.mako")
# the Config attribute that tells env.py which connection a run is for
CONNECTION_ATTRIBUTE = "rhosocial_ar.connection"
# ... and which chain, when it is not the connection's own (a shard group's, the tenants')
CHAIN_ATTRIBUTE = "rhosocial_ar.chain"

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_MAX_IDENTIFIER = 63      # PostgreSQL's limit; MySQL allows 64

PathLike = str | Path


class Chain(NamedTuple):
    """A chain run on connections that are not its own: a shard group's or the tenant models'
    (migrate_many.py). The functions below take one as ``chain=``; without it a connection
    runs its own chain, ``DIR/<name>/versions`` and ``alembic_version_<name>``."""

    path: str                   # its directory below DIR: 'shards/invoices', 'tenants'
    version_table: str
    metadata: sa.MetaData
    option: str                 # how the command line names it: '--shards invoices', '--tenants'
    label: str                  # how messages name it: "shard group 'invoices'"
    schema: str | None = None   # the version table's schema (a tenant's), else the default one


class RevisionInfo(NamedTuple):
    """One revision of a connection's chain, as :func:`history` lists it."""

    revision: str
    down_revision: str | tuple[str, ...] | None
    message: str
    is_head: bool
    path: Path


# -- names and places ---------------------------------------------------------

def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise MigrationError(
            f"connection name {name!r} cannot name a migrations directory; "
            "use letters, digits, '_', '.' and '-'"
        )
    if name in migrate_groups.RESERVED:
        raise MigrationError(f"connection name {name!r} cannot have migrations: {name}/ in the "
                             f"migrations directory holds the chains of {name} (--{name})")
    return name


def version_table(name: str) -> str:
    """The table that records where ``name``'s database is in its chain: ``alembic_version_<name>``."""
    table = f"{VERSION_TABLE_PREFIX}_{re.sub(r'[^a-z0-9_]', '_', _check_name(name).lower())}"
    if len(table) > _MAX_IDENTIFIER:
        raise MigrationError(f"connection name {name!r} is too long for a version table name")
    return table


def versions_dir(name: str, directory: PathLike = DEFAULT_DIRECTORY) -> Path:
    """Where ``name``'s revision files live: ``<directory>/<name>/versions``."""
    return Path(directory) / _check_name(name) / "versions"


def _versions(name: str, directory: PathLike, chain: Chain | None) -> Path:
    if chain is None:
        return versions_dir(name, directory)
    return Path(directory) / chain.path / "versions"


def _option(name: str, chain: Chain | None) -> str:
    return chain.option if chain is not None else f"-c {name}"


def init(directory: PathLike = DEFAULT_DIRECTORY) -> list[Path]:
    """Create ``env.py`` and ``script.py.mako`` in ``directory`` unless present; returns the files written."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for filename in TEMPLATE_FILES:
        target = root / filename
        if not target.exists():
            shutil.copyfile(TEMPLATE / filename, target)
            written.append(target)
    return written


def _chains(directory: PathLike) -> list[str]:
    root = Path(directory)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "versions").is_dir() and _NAME.match(p.name)
                  and p.name not in migrate_groups.RESERVED)


def _model_connections() -> list[str]:
    """Configured connections that take writes and have models."""
    configured = {c.name: c for c in ConnectionManager.connections()}
    return sorted(
        name for name, metadata in registry.tables_by_connection().items()
        if metadata.tables and name in configured and not configured[name].read_only
    )


def unconfigured_models() -> list[tuple[str, str]]:
    """(model, connection) for each model whose ``__connection__`` names no configured connection."""
    configured = set(ConnectionManager.names()) | {migrate_groups.tenant_placeholder()}
    return sorted(
        (f"{model.__module__}.{model.__qualname__}", name)
        for name, metadata in registry.tables_by_connection().items() if name not in configured
        for table in metadata.tables.values() for model in registry.models_of_table(table)
    )


def all_names(directory: PathLike = DEFAULT_DIRECTORY, *, with_models: bool = False) -> list[str]:
    """The connections ``--all`` acts on: those with a chain in ``directory``.

    With ``with_models`` (revision and check), also the configured writable
    connections that have models but no chain yet; a model whose connection
    is not configured is then an error (it would be left out in silence).
    """
    names = set(_chains(directory))
    if with_models:
        stray = unconfigured_models()
        if stray:
            listed = ", ".join(f"{model} has __connection__ {name!r}" for model, name in stray)
            raise MigrationError(f"{listed}, which is not configured (configured: "
                                 f"{', '.join(map(repr, ConnectionManager.names())) or 'none'})")
        names |= set(_model_connections())
    return sorted(names)


# -- Alembic configuration ----------------------------------------------------

def _config(name: str, directory: PathLike, chain: Chain | None = None) -> Config:
    """An Alembic Config for one connection's chain, or ``chain`` run on the connection
    (which must be configured)."""
    get_connection(name)   # raises ConnectionNotFound for an unknown name
    root = Path(directory)
    config = Config(stdout=io.StringIO(), cmd_opts=argparse.Namespace(quiet=True),
                    attributes={CONNECTION_ATTRIBUTE: name, CHAIN_ATTRIBUTE: chain})
    for option, value in (
        ("script_location", str(root)),
        ("version_locations", str(_versions(name, root, chain))),
        ("path_separator", "newline"),
    ):
        config.set_main_option(option, value.replace("%", "%%"))
    return config


def _no_migrations(name: str, directory: PathLike, chain: Chain | None = None) -> MigrationError:
    what = f"connection {name!r}" if chain is None else chain.label
    return MigrationError(
        f"no migrations yet for {what} in {_versions(name, directory, chain)}; create the first "
        f"with `rhosocial-ar db revision {_option(name, chain)} --autogenerate -m MESSAGE`"
    )


def _script(name: str, directory: PathLike, config: Config, chain: Chain | None = None) -> ScriptDirectory:
    """The chain of ``name`` (or ``chain``); raises ``MigrationError`` when it has no revision yet."""
    if not _versions(name, directory, chain).is_dir() or not (Path(directory) / "env.py").is_file():
        raise _no_migrations(name, directory, chain)
    with _alembic_errors(name, chain):
        script = ScriptDirectory.from_config(config)
        if not script.get_heads():
            raise _no_migrations(name, directory, chain)
    return script


@contextmanager
def _alembic_errors(name: str, chain: Chain | None = None) -> Iterator[None]:
    """Re-raise Alembic's command errors, and the database's errors while a migration runs,
    as ``MigrationError`` naming the connection (the original is kept as ``__cause__``)."""
    try:
        yield
    except CommandError as exc:
        hint = ""
        if "multiple head" in str(exc).lower():    # two branches: Alembic's way out is a merge
            hint = (f"; see them with `rhosocial-ar db heads {_option(name, chain)}`, join them "
                    f"with `rhosocial-ar db merge {_option(name, chain)} -m MESSAGE`")
        raise MigrationError(f"connection {name!r}: {exc}{hint}") from exc
    except sa.exc.SQLAlchemyError as exc:
        raise MigrationError(f"connection {name!r}: {describe_error(exc)}") from exc


def _writable(name: str) -> None:
    if get_connection(name).read_only:
        raise ReadOnlyError(f"connection {name!r} is read-only; migrations write to its database")


# -- commands -----------------------------------------------------------------

def revision(name: str, message: str, autogenerate: bool = False,
             directory: PathLike = DEFAULT_DIRECTORY, *, chain: Chain | None = None) -> Path | None:
    """Write a new revision file in ``name``'s chain (or ``chain``) and return its path.

    With ``autogenerate`` the file holds what turns the database into the
    models, and nothing is written (None is returned) when they already agree.
    """
    config = _config(name, directory, chain)
    init(directory)
    versions = _versions(name, directory, chain)
    # made here, so removed again when no revision ends up in them
    made = [path for path in reversed((versions, *versions.parents)) if not path.exists()]
    versions.mkdir(parents=True, exist_ok=True)
    try:
        if autogenerate:
            _require_head(name, ScriptDirectory.from_config(config), "autogenerate a revision", chain)
        with _alembic_errors(name, chain):
            result = command.revision(config, message=message, autogenerate=autogenerate,
                                      process_revision_directives=_tidy)
    finally:
        if made and not any(versions.glob("*.py")):
            shutil.rmtree(made[0])
    script = result[0] if isinstance(result, list) and result else result
    if script is None or isinstance(script, list):
        return None
    return Path(script.path)


def _tidy(context: Any, revision: Any, directives: list[Any]) -> None:
    """Autogenerate writes no file when it found nothing to do, and drops no index of a table
    it drops (MySQL refuses to drop an index a foreign key needs; the table takes it along)."""
    if not directives:
        return
    script = directives[0]
    for ops in (*script.upgrade_ops_list, *script.downgrade_ops_list):
        dropped = {(op.schema, op.table_name) for op in ops.ops if isinstance(op, DropTableOp)}
        ops.ops[:] = [op for op in ops.ops if not _drops_index_of(op, dropped)]
    if all(ops.is_empty() for ops in script.upgrade_ops_list):
        directives[:] = []


def _drops_index_of(op: Any, tables: set[tuple[str | None, str]]) -> bool:
    if isinstance(op, ModifyTableOps):
        op.ops[:] = [inner for inner in op.ops if not _drops_index_of(inner, tables)]
        return (op.schema, op.table_name) in tables and not op.ops
    return isinstance(op, DropIndexOp) and (op.schema, op.table_name) in tables


def _require_head(name: str, script: ScriptDirectory, doing: str, chain: Chain | None = None) -> None:
    at, head = set(current(name, chain=chain)), set(script.get_heads())
    if at != head:
        raise MigrationError(
            f"connection {name!r}: the database is at {_ids(at)}, its migrations' head is "
            f"{_ids(head)}; run `rhosocial-ar db upgrade {_option(name, chain)}` before you {doing}"
        )


def _ids(revisions: Any) -> str:
    return ", ".join(sorted(revisions)) or "<base>"


def _move(name: str, directory: PathLike, step: Any, revision: str,
          chain: Chain | None = None) -> tuple[str, ...]:
    """Run one Alembic command that moves ``name``'s version; returns where it is now."""
    _writable(name)
    config = _config(name, directory, chain)
    _script(name, directory, config, chain)
    with _alembic_errors(name, chain):
        step(config, revision)
    return current(name, chain=chain)


def upgrade(name: str, revision: str = "head", directory: PathLike = DEFAULT_DIRECTORY, *,
            chain: Chain | None = None) -> tuple[str, ...]:
    """Run ``name``'s migrations up to ``revision``; returns the revisions the database is now at.

    ``revision`` is ``head``, ``heads`` (every branch), an id, ``+1``, ...
    """
    return _move(name, directory, command.upgrade, revision, chain)


def downgrade(name: str, revision: str, directory: PathLike = DEFAULT_DIRECTORY, *,
              chain: Chain | None = None) -> tuple[str, ...]:
    """Undo ``name``'s migrations down to ``revision`` ('-1', an id, 'base'); returns where it is now."""
    return _move(name, directory, command.downgrade, revision, chain)


def upgrade_sql(name: str, revision: str = "head", directory: PathLike = DEFAULT_DIRECTORY) -> str:
    """The SQL an upgrade would run, in ``name``'s dialect; the database is not touched.

    As Alembic's offline mode (``alembic upgrade --sql``): from base, or from
    ``START`` with ``START:END``; the script also writes the version table.
    """
    return _offline(name, directory, command.upgrade, revision)


def downgrade_sql(name: str, revision: str, directory: PathLike = DEFAULT_DIRECTORY) -> str:
    """The SQL a downgrade would run; ``revision`` must say where from: ``START:END``."""
    return _offline(name, directory, command.downgrade, revision)


def _offline(name: str, directory: PathLike, step: Any, revision: str) -> str:
    config = _config(name, directory)
    _script(name, directory, config)
    config.output_buffer = buffer = io.StringIO()
    with _alembic_errors(name):
        step(config, revision, sql=True)
    return buffer.getvalue()


def stamp(name: str, revision: str, directory: PathLike = DEFAULT_DIRECTORY, *,
          chain: Chain | None = None) -> tuple[str, ...]:
    """Record ``revision`` in ``name``'s version table without running any migration."""
    return _move(name, directory, command.stamp, revision, chain)


def current(name: str, *, chain: Chain | None = None) -> tuple[str, ...]:
    """The revisions ``name``'s database is at: () before the first upgrade, else usually one id."""
    opts: dict[str, Any] = {"version_table": version_table(name) if chain is None else chain.version_table}
    if chain is not None and chain.schema is not None:
        opts["version_table_schema"] = chain.schema
    with _connect(name) as connection:
        context = MigrationContext.configure(connection, opts=opts)
        return tuple(context.get_current_heads())


def heads(name: str, directory: PathLike = DEFAULT_DIRECTORY, *,
          chain: Chain | None = None) -> tuple[str, ...]:
    """The newest revisions of ``name``'s chain (one unless it branched)."""
    return tuple(_script(name, directory, _config(name, directory, chain), chain).get_heads())


def branches(name: str, directory: PathLike = DEFAULT_DIRECTORY, *,
             chain: Chain | None = None) -> dict[str, tuple[str, ...]]:
    """The revisions of ``name``'s chain that two or more revisions revise: {branch point: children}."""
    script = _script(name, directory, _config(name, directory, chain), chain)
    return {rev.revision: tuple(sorted(rev.nextrev)) for rev in script.walk_revisions()
            if rev.is_branch_point}


def merge(name: str, message: str, revisions: tuple[str, ...] = ("heads",),
          directory: PathLike = DEFAULT_DIRECTORY, *, chain: Chain | None = None) -> Path:
    """Write a revision that revises ``revisions`` (by default every head), joining the branches."""
    config = _config(name, directory, chain)
    _script(name, directory, config, chain)
    with _alembic_errors(name, chain):
        script = command.merge(config, list(revisions), message=message)
    if script is None:
        raise MigrationError(f"connection {name!r}: no merge revision was written")
    return Path(script.path)


def history(name: str, directory: PathLike = DEFAULT_DIRECTORY, *,
            chain: Chain | None = None) -> list[RevisionInfo]:
    """The revisions of ``name``'s chain, newest first; reads files only, not the database."""
    script = _script(name, directory, _config(name, directory, chain), chain)
    tips = set(script.get_heads())
    infos = []
    for rev in script.walk_revisions():
        down = rev.down_revision
        parents = tuple(down) if isinstance(down, list | tuple) else down
        infos.append(RevisionInfo(rev.revision, parents, rev.doc or "", rev.revision in tips,
                                  Path(rev.path)))
    return infos


def check(name: str, directory: PathLike = DEFAULT_DIRECTORY, *,
          chain: Chain | None = None) -> list[str]:
    """What differs between ``name``'s models and its database, one line each; [] when they agree.

    A database that is not at its chain's head counts as a difference.
    """
    config = _config(name, directory, chain)
    script = _script(name, directory, config, chain)
    found: list[str] = []

    def compare(_revision: Any, context: MigrationContext) -> list[Any]:
        at, tips = set(context.get_current_heads()), set(script.get_heads())
        if at != tips:
            found.append(f"the database is at {_ids(at)}, the migrations' head is {_ids(tips)}: "
                         f"run upgrade")
        else:
            diffs = compare_metadata(context, context.opts["target_metadata"])
            found.extend(describe(diff) for diff in diffs)
        return []

    with _alembic_errors(name, chain), EnvironmentContext(config, script, fn=compare):
        script.run_env()
    return found


# -- every connection at once -------------------------------------------------

def revision_all(message: str, autogenerate: bool = False,
                 directory: PathLike = DEFAULT_DIRECTORY) -> dict[str, Path | None]:
    """:func:`revision` for every connection with a chain or with models."""
    return {name: revision(name, message, autogenerate, directory)
            for name in _names(directory, with_models=True)}


def upgrade_all(revision: str = "head",
                directory: PathLike = DEFAULT_DIRECTORY) -> dict[str, tuple[str, ...]]:
    """:func:`upgrade` every connection that has a chain, one after the other."""
    return {name: upgrade(name, revision, directory) for name in _names(directory)}


def downgrade_all(revision: str, directory: PathLike = DEFAULT_DIRECTORY) -> dict[str, tuple[str, ...]]:
    """:func:`downgrade` every connection that has a chain (``revision`` is usually '-1' or 'base')."""
    return {name: downgrade(name, revision, directory) for name in _names(directory)}


def current_all(directory: PathLike = DEFAULT_DIRECTORY) -> dict[str, tuple[str, ...]]:
    """:func:`current` of every connection that has a chain."""
    return {name: current(name) for name in _names(directory)}


def check_all(directory: PathLike = DEFAULT_DIRECTORY) -> dict[str, list[str]]:
    """:func:`check` every connection with a chain or models; a connection without migrations differs."""
    found = {}
    for name in _names(directory, with_models=True):
        try:
            found[name] = check(name, directory)
        except MigrationError as exc:   # no chain yet: reported as this connection's difference
            found[name] = [str(exc)]
    return found


def _names(directory: PathLike, with_models: bool = False) -> list[str]:
    names = all_names(directory, with_models=with_models)
    if not names:
        what = "migrations or models" if with_models else "migrations"
        raise MigrationError(f"no connection has {what} yet (looked in {directory})")
    return names


# -- env.py -------------------------------------------------------------------

def run_environment(**options: Any) -> None:
    """Run one connection's migrations; ``env.py`` calls this, Alembic supplies the context.

    ``options`` go to ``context.configure()``; an ``include_name`` or
    ``include_object`` given there narrows ours instead of replacing it.
    """
    from alembic import context

    name = context.config.attributes.get(CONNECTION_ATTRIBUTE)
    if name is None:
        raise MigrationError(
            "env.py runs through `rhosocial-ar db` or rhosocial_ar.migrate, which say "
            "which connection to migrate; plain `alembic` commands cannot"
        )
    chain: Chain | None = context.config.attributes.get(CHAIN_ATTRIBUTE)
    if chain is None:
        metadata = registry.tables_by_connection().get(name) or sa.MetaData()
        table, schema = version_table(name), None
    else:
        metadata, table, schema = chain.metadata, chain.version_table, chain.schema
    settings: dict[str, Any] = {
        "target_metadata": metadata,
        "version_table": table,
        "version_table_schema": schema,
        "render_as_batch": True,      # ALTERs SQLite can run; plain ALTER elsewhere
        "compare_type": True,
        "include_name": _include_name(name, metadata),
        "render_item": _import_column_types,
    }
    for key in ("include_name", "include_object"):
        if key in options and key in settings:
            settings[key] = _both(settings[key], options.pop(key))
    settings.update(options)
    if context.is_offline_mode():    # --sql: the script in the connection's dialect, no database
        context.configure(url=get_connection(name).engine.url, literal_binds=True, **settings)
        with context.begin_transaction():
            context.run_migrations()
        return
    with _connect(name) as connection:
        context.configure(connection=connection, **settings)
        with context.begin_transaction():
            context.run_migrations()


def _connect(name: str) -> sa.Connection:
    """A connection Alembic runs on; an async one's only inside the asyncio bridge (aio.py)."""
    connection = get_connection(name)
    if connection.is_async and not aio.in_bridge():
        raise MigrationError(
            f"connection {name!r} is async: run its migrations in the event loop with "
            f"await rhosocial_ar.aio.run(migrate.upgrade, {name!r}), or give the command line "
            f"an app module that configures it with a sync driver (docs/async.md#migrations)")
    return connection.engine.connect()


def _import_column_types(kind: str, item: Any, autogen_context: Any) -> bool:
    """A revision using the library's column types (values.py) imports them; Alembic renders them."""
    if kind == "type" and type(item).__module__ == "rhosocial_ar.values":
        autogen_context.imports.add("import rhosocial_ar.values")
    return False


def _include_name(name: str, metadata: sa.MetaData) -> Callable[..., bool]:
    """Skip every version table, the library's own tables and the tables of other chains' models
    (other connections', the shard groups', the tenants')."""
    own = set(metadata.tables)
    others = ({key for other, md in registry.tables_by_connection().items()
               for key in md.tables} | migrate_groups.sharded_tables()) - own

    def include_name(object_name: str | None, type_: str, parents: dict[str, str | None]) -> bool:
        if type_ != "table" or object_name is None:
            return True
        schema = parents.get("schema_name")
        key = f"{schema}.{object_name}" if schema else object_name
        if key in own:
            return True
        return key not in others and not object_name.startswith(_SKIPPED_PREFIXES)

    return include_name


_SKIPPED_PREFIXES = (VERSION_TABLE_PREFIX, LIBRARY_TABLE_PREFIX)


def _both(first: Callable[..., bool], second: Callable[..., bool]) -> Callable[..., bool]:
    return lambda *args: bool(first(*args) and second(*args))


# -- readable differences -----------------------------------------------------

def describe(diff: Any) -> str:
    """One line for an Alembic autogenerate difference, e.g. ``add column users.email``."""
    if isinstance(diff, list):     # modify_* differences come as a list of tuples
        return "; ".join(describe(item) for item in diff)
    kind = diff[0]
    verb, _, what = kind.partition("_")
    if what == "table":
        return f"{verb} table {diff[1].name}"
    if what == "column":
        return f"{verb} column {diff[2]}.{diff[3].name} {_type(diff[3].type)}"
    if what in ("index", "constraint", "fk"):
        obj = diff[1]
        label = {"index": "unique index" if getattr(obj, "unique", False) else "index",
                 "fk": "foreign key"}.get(what, "unique constraint")
        columns = ", ".join(c.name for c in obj.columns) if hasattr(obj, "columns") else ""
        return f"{verb} {label} {obj.name or ''} on {obj.table.name}({columns})".replace("  ", " ")
    if verb == "modify":
        table, column, old, new = diff[2], diff[3], diff[-2], diff[-1]
        if what == "type":
            old, new = _type(old), _type(new)
        return f"change {what} of {table}.{column}: {old} -> {new}"
    return repr(diff)


def _type(column_type: Any) -> str:
    try:
        return str(column_type)
    except sa.exc.CompileError:   # a type the default dialect cannot render
        return repr(column_type)
