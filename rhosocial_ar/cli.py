"""The ``rhosocial-ar`` command line.

    $ rhosocial-ar demo --dir /tmp/ar-demo
    $ python -m rhosocial_ar.cli demo --sales-url postgresql+psycopg2://root@127.0.0.1/demo_sales

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
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CommandError", "build_parser", "main"]

PROG = "rhosocial-ar"


class CommandError(Exception):
    """A command cannot go on for a reason the user can fix; the message says which."""


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
        help="Chinook_Sqlite.sqlite to load (default: ../shared/data/chinook/ beside "
        "the repository or the current directory)",
    )
    parser.add_argument(
        "--catalog-url", default=None, metavar="URL",
        help="SQLAlchemy URL of the catalog database, e.g. "
        "postgresql+psycopg2://root@127.0.0.1/demo_catalog (its demo tables are recreated)",
    )
    parser.add_argument(
        "--sales-url", default=None, metavar="URL",
        help="SQLAlchemy URL of the sales database, e.g. "
        "mysql+pymysql://root@127.0.0.1/demo_sales (its demo tables are recreated)",
    )
    parser.add_argument(
        "--drop", action="store_true",
        help="drop the demo tables at the end instead of keeping them to look at",
    )
    parser.set_defaults(handler=_run_demo)


# one entry per subcommand; `db` (migrations) and `recover` will join here
SUBCOMMANDS: list[Callable[[Any], None]] = [_add_demo]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="rhosocial_ar: an ActiveRecord layer over SQLAlchemy Core, "
        "across many databases at once.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback when a command fails")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def describe_error(exc: BaseException) -> str:
    """One readable line for an error: the driver's message for database errors."""
    if isinstance(exc, CommandError):
        text = str(exc)
    else:
        orig = getattr(exc, "orig", None)   # SQLAlchemy DBAPIError: the driver's error
        shown = orig if isinstance(orig, BaseException) else exc
        text = f"{type(shown).__name__}: {shown}"
    return " ".join(text.split())


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
    # run the imported module's main(), so that `python -m rhosocial_ar.cli` and the
    # subcommands' modules share one CommandError class
    from rhosocial_ar.cli import main as _main

    sys.exit(_main())
