"""The ``rhosocial-ar`` command line.

    $ rhosocial-ar demo --dir /tmp/ar-demo
    $ rhosocial-ar db upgrade --all --app myapp.settings
    $ python -m rhosocial_ar demo --sales-url postgresql+psycopg2://root@127.0.0.1/demo_sales

    >>> from rhosocial_ar.cli import main
    >>> main(['demo', '--dir', '/tmp/ar-demo'])     # prints the tour, returns the exit code
    0

Each subcommand is declared by one ``_add_*`` function that adds a sub-parser
and sets its ``handler``; handlers import their module only when they run, so
``rhosocial-ar --help`` stays fast. A failure prints one line on stderr and
returns 1 (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import CommandError, describe_error

__all__ = ["CommandError", "build_parser", "main"]

PROG = "rhosocial-ar"


def _run_demo(args: argparse.Namespace) -> int:
    """Run the two-database Chinook tour (see ``rhosocial_ar.demo``)."""
    from . import demo

    return demo.run(args)


def _add_demo(commands: Any) -> None:
    """Declare ``rhosocial-ar demo``."""
    parser = commands.add_parser(
        "demo",
        help="load the Chinook store into two databases and tour the query API",
        description="Load the Chinook sample database into two connections, 'catalog' "
        "(artists, albums, tracks) and 'sales' (customers, invoices), then show queries, "
        "a transaction with a savepoint and upserts across both. By default both are "
        "SQLite files in --dir; --catalog-url/--sales-url put either side on a server.",
    )
    parser.add_argument(
        "--dir", type=Path, default=Path("demo_data"),
        help="where the SQLite files go; catalog.db and sales.db are recreated "
        "(default: ./demo_data)",
    )
    parser.add_argument(
        "--chinook", type=Path, default=None, metavar="PATH",
        help="Chinook_Sqlite.sqlite to load (default: the copy shipped with the package)",
    )
    parser.add_argument(
        "--catalog-url", default=None, metavar="URL",
        help="SQLAlchemy URL of the catalog database, e.g. "
        "postgresql+psycopg2://root@127.0.0.1/demo_catalog (its demo tables are recreated "
        "by the demo's 'catalog' migrations, shipped in the package)",
    )
    parser.add_argument(
        "--sales-url", default=None, metavar="URL",
        help="SQLAlchemy URL of the sales database, e.g. "
        "mysql+pymysql://root@127.0.0.1/demo_sales (its demo tables are recreated by "
        "the demo's 'sales' migrations, shipped in the package)",
    )
    parser.add_argument(
        "--no-progress", action="store_true",
        help="no progress bar for the transfer step (it only shows on a terminal anyway)",
    )
    parser.add_argument(
        "--drop", action="store_true",
        help="downgrade both databases to base at the end (dropping the demo tables) "
        "instead of keeping them to look at",
    )
    parser.set_defaults(handler=_run_demo)


# -- rhosocial-ar db: migrations per connection (rhosocial_ar.migrate) --------------

APP_VARIABLE = "RHOSOCIAL_AR_APP"
_WITH_MODELS = ("revision", "check")   # their --all also covers connections without a chain

_DB_EPILOG = f"""\
examples:
  rhosocial-ar db init
  rhosocial-ar db revision -c sales -m "add invoices" --autogenerate --app myapp
  rhosocial-ar db upgrade --all --app myapp
  rhosocial-ar db downgrade -c sales -1
  rhosocial-ar db check --all        # exits 1 when models and databases differ

--app (or ${APP_VARIABLE}) names the module that configures the connections and
imports every model; see docs/migrations.md.
"""


def _add_db(commands: Any) -> None:
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

    def add(name: str, summary: str, description: str, all_help: str | None) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=summary, description=description)
        parser.set_defaults(handler=_run_db)
        if all_help is not None:
            which = parser.add_mutually_exclusive_group(required=True)
            which.add_argument("-c", "--connection", metavar="NAME", help="the connection to act on")
            which.add_argument("--all", action="store_true", help=all_help)
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
        "every connection that has migrations or models")
    revision.add_argument("-m", "--message", required=True, help="what the revision does")
    revision.add_argument("--autogenerate", action="store_true",
                          help="compare the models with the database and write the difference")
    add("upgrade", "run a connection's migrations up to a revision",
        "Run the connection's own migrations up to REVISION.", chains).add_argument(
        "revision", nargs="?", default="head", metavar="REVISION",
        help="where to stop (default: head)")
    add("downgrade", "undo a connection's migrations down to a revision",
        "Run the downgrades of the connection's migrations down to REVISION.", chains).add_argument(
        "revision", metavar="REVISION", help="-1 (one step), a revision id, or base (all of them)")
    add("current", "show the revision each database is at",
        "Show the revision recorded in the connection's version table, and its chain's head.",
        chains)
    add("history", "list a connection's revisions, newest first",
        "List the revisions of the connection's chain, newest first (reads files only).", chains)
    add("check", "exit 1 when models and database differ",
        "Compare the connection's models with its database; list each difference and exit 1 "
        "when there is any, or when the database is not at the chain's head.",
        "every connection that has migrations or models")
    add("stamp", "record a revision without running migrations",
        "Write REVISION to the connection's version table without running any migration, "
        "e.g. to adopt a database an existing Alembic setup created.", chains).add_argument(
        "revision", metavar="REVISION", help="a revision id, head or base")


def load_app(spec: str | None) -> None:
    """Import the user's app (``package.module``, ``package.module:function`` or ``app.py``)."""
    if not spec:
        return
    target, _, function = spec.partition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise CommandError(f"app file not found: {path} (--app / ${APP_VARIABLE})")
        sys.path.insert(0, str(path.resolve().parent))
        found = importlib.util.spec_from_file_location(path.stem, path)
        assert found is not None and found.loader is not None
        module = importlib.util.module_from_spec(found)
        sys.modules[path.stem] = module
        found.loader.exec_module(module)
    else:
        if not {"", os.getcwd()} & set(sys.path):
            sys.path.insert(0, os.getcwd())    # like `python -m`: modules beside you import
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (target == exc.name or target.startswith(exc.name + ".")):
                raise    # the app itself imports something missing: its own error
            raise CommandError(
                f"app module {target!r} not found (--app / ${APP_VARIABLE}); give a module "
                f"importable from {os.getcwd()} or a path to a .py file") from None
    if function:
        setup = getattr(module, function, None)
        if not callable(setup):
            raise CommandError(f"app {spec!r}: {target} has no function {function!r}")
        setup()


def load_configured_app(spec: str | None) -> None:
    """Import the app (``--app`` or the environment); it must configure some connection."""
    from .connections import ConnectionManager

    load_app(spec or os.environ.get(APP_VARIABLE))
    if not ConnectionManager.names():
        raise CommandError(f"no connections are configured: pass --app MODULE (or set "
                           f"${APP_VARIABLE}) naming the module that configures them")


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
    return f"no connection has {what} yet (looked in {_shown(directory)})"


def _revision(args: argparse.Namespace, name: str) -> None:
    from . import migrate

    path = migrate.revision(name, args.message, args.autogenerate, args.directory)
    if path is None:
        print(f"{name}: no changes: the database matches the models; no revision written")
    else:
        print(f"{name}: wrote {_shown(path)}")


def _move(args: argparse.Namespace, name: str) -> None:
    """upgrade, downgrade or stamp, printing each migration as it runs."""
    from . import migrate

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
    print(f"{name}: {_where(name, at, tips)}")


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
                print(f"  - {line}")
        else:
            print(f"{name}: the database matches the models")
    if differ:
        raise CommandError(f"models and database differ on {', '.join(map(repr, differ))} "
                           f"(listed above)")
    return 0


_DB_ACTIONS: dict[str, Callable[[argparse.Namespace, str], None]] = {
    "revision": _revision, "upgrade": _move, "downgrade": _move, "stamp": _move,
    "current": _current, "history": _history,
}


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# -- rhosocial-ar recover: finish in-doubt two-phase transactions --------------------

def _run_recover(args: argparse.Namespace) -> int:
    """Resolve in-doubt two-phase transactions; exit 1 when some had to be skipped."""
    from .connections import ConnectionManager
    from .recovery import recover

    load_configured_app(args.app)
    names = args.connection or None
    for name in names or []:
        ConnectionManager.get(name)
    report = recover(names)
    print(report)
    return 1 if report.skipped else 0


def _add_recover(commands: Any) -> None:
    """Declare ``rhosocial-ar recover``."""
    parser = commands.add_parser(
        "recover", help="finish two-phase transactions left in doubt by a crash",
        description="Find the prepared transactions two_phase() left behind on every "
        "configured connection (or those given with -c) and commit or roll back each "
        "according to the decision log. Safe to repeat and to run beside live "
        "coordinators. Exits 1 when some could not be finished yet (listed).",
    )
    parser.add_argument("-c", "--connection", action="append", metavar="NAME",
                        help="only this connection (repeatable); default: all")
    parser.add_argument("--app", default=None, metavar="MODULE",
                        help=f"module that configures the connections (default: ${APP_VARIABLE})")
    parser.set_defaults(handler=_run_recover)


def _add_transfer(commands: Any) -> None:
    """Declare ``rhosocial-ar transfer`` (``rhosocial_ar.cli_transfer``)."""
    from .cli_transfer import add_transfer

    add_transfer(commands)


# one entry per subcommand
SUBCOMMANDS: list[Callable[[Any], None]] = [_add_demo, _add_db, _add_recover, _add_transfer]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="rhosocial_ar: an ActiveRecord layer over SQLAlchemy Core, "
        "across many databases at once.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback when a command fails")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # reported as one line (the traceback with --debug), not swallowed
        if args.debug:
            raise
        print(f"{PROG}: error: {describe_error(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
