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
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .cli_app import APP_VARIABLE, load_app, load_configured_app, with_options
from .errors import CommandError, describe_error

__all__ = ["APP_VARIABLE", "CommandError", "build_parser", "load_app", "load_configured_app", "main"]

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


def _add_db(commands: Any) -> None:
    """Declare ``rhosocial-ar db`` (``rhosocial_ar.cli_db``)."""
    from .cli_db import add_db

    add_db(commands)


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
    if any(c.is_async for c in ConnectionManager.connections()):
        report = _with_async(report, names)
    print(report)
    return 1 if report.skipped else 0


def _with_async(report: Any, names: list[str] | None) -> Any:
    """``report`` of the sync connections, with what ``arecover()`` did on the async ones."""
    import asyncio

    from .connections import ConnectionManager
    from .recovery import RecoveryReport, arecover

    async def recover_async() -> RecoveryReport:
        try:
            return await arecover(names)
        finally:
            await ConnectionManager.areset()

    is_async = {c.name: c.is_async for c in ConnectionManager.connections()}
    done = asyncio.run(recover_async())
    # each run lists the connections of the other kind as skipped: the other run took them
    return RecoveryReport(
        committed=report.committed + done.committed,
        rolled_back=report.rolled_back + done.rolled_back,
        skipped=[s for s in report.skipped if not is_async.get(s[0])]
        + [s for s in done.skipped if is_async.get(s[0])],
        busy=report.busy + done.busy)


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


def _add_shards(commands: Any) -> None:
    """Declare ``rhosocial-ar shards`` (``rhosocial_ar.cli_shards``)."""
    from .cli_shards import add_shards

    add_shards(commands)


# one entry per subcommand
SUBCOMMANDS: list[Callable[[Any], None]] = [_add_demo, _add_db, _add_recover, _add_transfer,
                                            _add_shards]


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
        print(f"{PROG}: error: {with_options(describe_error(exc) + _hint(exc), args)}",
              file=sys.stderr)
        return 1


# drivers are extras (pyproject.toml): the one a URL needs, by the module it imports
_DRIVER_EXTRAS = {"psycopg2": "postgresql", "pymysql": "mysql"}


def _hint(exc: BaseException) -> str:
    """What to do about a few errors whose own message does not say."""
    text = str(exc)
    if "sqlalchemy.dialects:postgres" in text and "postgresql" not in text:
        return ("; SQLAlchemy spells the scheme postgresql:// (postgresql+psycopg2://), "
                "not postgres://")
    missing = re.search(r"is not installed \((\w+)\)", text)   # connections.py's words
    if missing and missing.group(1) in _DRIVER_EXTRAS:
        return (f"; the driver is an extra: pip install "
                f"'rhosocial_ar[{_DRIVER_EXTRAS[missing.group(1)]}]' (or rhosocial_ar[all])")
    return ""


if __name__ == "__main__":
    sys.exit(main())
