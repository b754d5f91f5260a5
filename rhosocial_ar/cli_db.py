"""``rhosocial-ar db``: Alembic migrations per connection (``rhosocial_ar.migrate``).

    $ rhosocial-ar db revision -c sales -m "add invoices" --autogenerate --app myapp
    $ rhosocial-ar db upgrade --all --app myapp
    $ rhosocial-ar db upgrade -c sales --sql --app myapp      # the SQL, not run
    $ rhosocial-ar db upgrade --shards Invoice --app myapp    # every shard (migrate_many.py)
    $ rhosocial-ar db upgrade --tenants --app myapp           # every tenant, with a progress bar

Each subcommand acts on one connection (``-c NAME``) or, with ``--all``, on
each in name order; ``--app`` names what configures the connections.
``--shards`` and ``--tenants`` run one chain on many databases (cli_db_many.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cli_app import APP_VARIABLE, load_configured_app, with_options
from .cli_db_many import add_many, run_many
from .errors import CommandError

__all__ = ["add_db"]

_WITH_MODELS = ("revision", "check")   # their --all also covers connections without a chain

_DB_EPILOG = f"""\
examples:
  rhosocial-ar db init
  rhosocial-ar db revision -c sales -m "add invoices" --autogenerate --app myapp
  rhosocial-ar db upgrade --all --app myapp
  rhosocial-ar db downgrade -c sales -1
  rhosocial-ar db check --all        # exits 1 when models and databases differ
  rhosocial-ar db upgrade --shards Invoice --app myapp   # the shard group's chain, on every shard
  rhosocial-ar db upgrade --tenants --app myapp          # the tenants' chain, on every tenant

--app (or ${APP_VARIABLE}) names the module that configures the connections and
imports every model; see docs/migrations.md.
"""


def add_db(commands: Any) -> None:
    """Declare ``rhosocial-ar db`` and its subcommands."""
    db = commands.add_parser(
        "db", help="Alembic migrations per connection: revision, upgrade, downgrade, check, ...",
        description="Alembic migrations, one chain per connection. DIR/env.py is shared; each\n"
        "connection NAME keeps its revisions in DIR/NAME/versions/ and its place in the\n"
        "table alembic_version_NAME of its own database. Upgrading one connection never\n"
        "runs another's migrations.",
        epilog=_DB_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)

    def add(name: str, summary: str, description: str, all_help: str | None,
            many: bool = False) -> argparse.ArgumentParser:
        """A subcommand; ``all_help`` None: no connection at all (init), "": -c only (merge);
        ``many``: also --shards and --tenants."""
        parser: argparse.ArgumentParser = actions.add_parser(name, help=summary, description=description)
        parser.set_defaults(handler=_run_db)
        if all_help is not None:
            which = parser.add_mutually_exclusive_group(required=True)
            which.add_argument("-c", "--connection", metavar="NAME", help="the connection to act on")
            if all_help:
                which.add_argument("--all", action="store_true", help=all_help)
            if many:
                add_many(parser, which)
            parser.add_argument(
                "--app", metavar="MODULE", default=None,
                help="the module that configures the connections and imports every model: "
                "package.module, package.module:function (called) or path/to/app.py "
                f"(default: ${APP_VARIABLE})",
            )
        parser.add_argument("--directory", type=Path, default=Path("migrations"), metavar="DIR",
                            help="the migrations directory (default: ./migrations)")
        return parser

    chains = "every connection that has migrations in DIR, in name order"
    add("init", "create DIR/env.py and DIR/script.py.mako",
        "Create the shared Alembic environment (env.py, script.py.mako) in DIR; files that "
        "exist are kept. The first `revision` does this by itself.", None)
    revision = add(
        "revision", "write a new revision file for a connection",
        "Write DIR/NAME/versions/<id>_<message>.py. With --autogenerate it holds what turns "
        "the connection's database into its models (other connections' tables are left "
        "alone); when they already agree no file is written.",
        "every connection that has migrations or models", many=True)
    revision.add_argument("-m", "--message", required=True, help="what the revision does")
    revision.add_argument("--autogenerate", action="store_true",
                          help="compare the models with the database and write the difference")
    sql = ("print the SQL instead of running it (Alembic's offline mode): the database is "
           "not read; REVISION may be START:END, and is for a downgrade")
    upgrade = add("upgrade", "run a connection's migrations up to a revision",
                  "Run the connection's own migrations up to REVISION.", chains, many=True)
    upgrade.add_argument("revision", nargs="?", default="head", metavar="REVISION",
                         help="where to stop (default: head; heads: every branch's head)")
    upgrade.add_argument("--sql", action="store_true", help=sql)
    downgrade = add("downgrade", "undo a connection's migrations down to a revision",
                    "Run the downgrades of the connection's migrations down to REVISION.", chains,
                    many=True)
    downgrade.add_argument("revision", metavar="REVISION",
                           help="-1 (one step), a revision id, or base (all of them)")
    downgrade.add_argument("--sql", action="store_true", help=sql)
    add("current", "show the revision each database is at",
        "Show the revision recorded in the connection's version table, and its chain's head.",
        chains, many=True)
    add("history", "list a connection's revisions, newest first",
        "List the revisions of the connection's chain, newest first (reads files only).", chains,
        many=True)
    add("check", "exit 1 when models and database differ",
        "Compare the connection's models with its database; list each difference and exit 1 "
        "when there is any, or when the database is not at the chain's head.",
        "every connection that has migrations or models", many=True)
    add("stamp", "record a revision without running migrations",
        "Write REVISION to the connection's version table without running any migration, "
        "e.g. to adopt a database an existing Alembic setup created.", chains, many=True).add_argument(
        "revision", metavar="REVISION", help="a revision id, head or base")
    add("heads", "list the newest revisions of a connection's chain",
        "List the heads of the connection's chain: one, unless two revisions revise the same "
        "parent (two branches, e.g. from two developers); then `merge` joins them.", chains,
        many=True)
    add("branches", "list the revisions where a connection's chain branches",
        "List each revision that two or more revisions revise, with those revisions.", chains)
    merge = add("merge", "write a revision that joins a connection's branches",
                "Write a revision in DIR/NAME/versions/ whose parents are REVISIONS (default: "
                "every head), so the chain has one head again; then `upgrade` runs both "
                "branches' migrations.", "")
    merge.add_argument("revisions", nargs="*", default=["heads"], metavar="REVISION",
                       help="the revisions to join (default: heads)")
    merge.add_argument("-m", "--message", required=True, help="what the merge revision says")


def _run_db(args: argparse.Namespace) -> int:
    """Run one ``db`` subcommand for one connection or, with --all, for each in turn."""
    from . import migrate
    from .errors import MigrationError

    command = args.db_command
    if command == "init":
        written = migrate.init(args.directory)
        for path in written:
            print(f"created {_shown(path)}")
        if not written:
            print(f"{_shown(args.directory)} already has env.py and script.py.mako")
        return 0
    load_configured_app(args.app)
    if getattr(args, "shards", None) is not None or getattr(args, "tenants", False):
        return run_many(args)
    if args.connection is not None:
        names = [args.connection]
    else:
        names = migrate.all_names(args.directory, with_models=command in _WITH_MODELS)
        if not names:
            raise MigrationError(_no_chains(args.directory, command in _WITH_MODELS))
    if command == "check":
        return _db_check(args, names)
    for name in names:
        _DB_ACTIONS[command](args, name)
    return 0


def _no_chains(directory: Path, with_models: bool) -> str:
    what = "migrations or models" if with_models else "migrations"
    text = f"no connection has {what} yet (looked in {_shown(directory)})"
    # --all is about connections; the chains of shard groups and tenants are named otherwise
    others = [option for folder, option in (("shards", "--shards MODEL_OR_GROUP"), ("tenants", "--tenants"))
              if (Path(directory) / folder).is_dir()]
    return text + (f"; shard groups and tenants have chains of their own: {', '.join(others)}"
                   if others else "")


def _revision(args: argparse.Namespace, name: str) -> None:
    from . import migrate

    path = migrate.revision(name, args.message, args.autogenerate, args.directory)
    if path is None:
        print(f"{name}: no changes: the database matches the models; no revision written")
    else:
        print(f"{name}: wrote {_shown(path)}")


def _move(args: argparse.Namespace, name: str) -> None:
    """upgrade, downgrade or stamp, printing each migration as it runs (or, with --sql, its SQL)."""
    from . import migrate

    if getattr(args, "sql", False):
        offline = migrate.upgrade_sql if args.db_command == "upgrade" else migrate.downgrade_sql
        print(f"-- rhosocial-ar db {args.db_command} {args.revision}: connection {name!r}")
        print(offline(name, args.revision, args.directory), end="")
        return
    before = migrate.current(name)
    log = logging.getLogger("alembic.runtime.migration")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"{name}: %(message)s"))
    handler.addFilter(lambda record: record.getMessage().startswith("Running "))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        after = getattr(migrate, args.db_command)(name, args.revision, args.directory)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    where = _where(name, after, migrate.heads(name, args.directory), hint=False)
    print(f"{name}: {'already at' if before == after else 'now at'} {where}")


def _current(args: argparse.Namespace, name: str) -> None:
    from . import migrate
    from .errors import MigrationError

    at = migrate.current(name)
    try:
        tips: tuple[str, ...] | None = migrate.heads(name, args.directory)
    except MigrationError:   # no chain yet: the database's revision is still worth showing
        tips = None
    print(f"{name}: {with_options(_where(name, at, tips), args)}")


def _where(name: str, at: tuple[str, ...], tips: tuple[str, ...] | None, hint: bool = True) -> str:
    shown = ", ".join(at) or "<base>"
    if tips is None:
        return f"{shown} (no migrations yet)"
    if set(at) == set(tips):
        return f"{shown} (head)"
    todo = f": run `rhosocial-ar db upgrade -c {name}`" if hint else ""
    return f"{shown} (head is {', '.join(tips)}{todo})"


def _history(args: argparse.Namespace, name: str) -> None:
    from . import migrate

    print(f"{name}:")
    for rev in migrate.history(name, args.directory):
        down = rev.down_revision
        parent = ", ".join(down) if isinstance(down, tuple) else down or "<base>"
        print(f"  {parent} -> {rev.revision}{' (head)' if rev.is_head else ''}, {rev.message}")


def _db_check(args: argparse.Namespace, names: list[str]) -> int:
    from . import migrate
    from .errors import MigrationError

    differ = []
    for name in names:
        try:
            found = migrate.check(name, args.directory)
        except MigrationError as exc:
            if args.connection is not None:
                raise      # -c NAME without migrations: an error, not a difference
            found = [str(exc)]
        if found:
            differ.append(name)
            print(f"{name}: {len(found)} difference{'s' if len(found) > 1 else ''}")
            for line in found:
                print(f"  - {with_options(line, args)}")
        else:
            print(f"{name}: the database matches the models")
    if differ:
        raise CommandError(f"models and database differ on {', '.join(map(repr, differ))} "
                           f"(listed above)")
    return 0


def _heads(args: argparse.Namespace, name: str) -> None:
    from . import migrate

    for rev in migrate.history(name, args.directory):
        if rev.is_head:
            print(f"{name}: {rev.revision} (head), {rev.message}")


def _branches(args: argparse.Namespace, name: str) -> None:
    from . import migrate

    found = migrate.branches(name, args.directory)
    for point, children in found.items():
        print(f"{name}: {point} -> {', '.join(children)} (branchpoint)")
    if not found:
        print(f"{name}: no branches")


def _merge(args: argparse.Namespace, name: str) -> None:
    from . import migrate

    path = migrate.merge(name, args.message, tuple(args.revisions), args.directory)
    print(f"{name}: wrote {_shown(path)}")


_DB_ACTIONS: dict[str, Callable[[argparse.Namespace, str], None]] = {
    "revision": _revision, "upgrade": _move, "downgrade": _move, "stamp": _move,
    "current": _current, "history": _history, "heads": _heads, "branches": _branches,
    "merge": _merge,
}


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
