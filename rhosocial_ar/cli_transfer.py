"""``rhosocial-ar transfer``: move or copy a model's rows from one connection to another.

    $ rhosocial-ar transfer User --from legacy --to modern --move --app myapp.settings
    $ rhosocial-ar transfer User --from a --to b --where "id > ?" 1000 --app myapp/settings.py

``--app`` names what configures the connections and defines the models, as
for ``rhosocial-ar db``. Every batch is atomic across both databases
(two-phase commit, or last-resource commit when one side is SQLite); after a
crash, ``rhosocial-ar recover`` and the same command again finish the job with
every row exactly once.
"""

from __future__ import annotations

import argparse
from typing import Any

from .errors import CommandError

__all__ = ["add_transfer", "find_model"]


def find_model(name: str) -> Any:
    """The model class called ``name`` (or ``module.Name``) among those the app defined."""
    from . import registry

    module, _, short = name.rpartition(".")
    found = [model for model in registry.models_named(short)
             if not module or model.__module__ == module]
    if not found:
        raise CommandError(f"no model named {name!r} in the app or the modules it imports "
                           f"(--app)")
    if len({(model.__module__, model.__qualname__) for model in found}) > 1:
        spelled = ", ".join(sorted(f"{m.__module__}.{m.__qualname__}" for m in found))
        raise CommandError(f"{name!r} names several models: {spelled}; give one of these")
    return found[-1]     # a module imported twice registers its model again: the latest


def _run_transfer(args: argparse.Namespace) -> int:
    """Copy or move the rows; prints one line of figures."""
    from . import recover, transfer
    from .cli_app import load_configured_app
    from .connections import ConnectionManager

    load_configured_app(args.app)
    model = find_model(args.model)
    for name in (args.source, args.target):
        ConnectionManager.get(name)      # ConnectionNotFound lists the configured names
    if args.recover_first:
        print(f"recover: {recover()}")
    query = model.using(args.source)
    if args.where:
        query = query.where(args.where[0], *args.where[1:])
    with model.using_connection(args.target):
        result = transfer(query, model, batch_size=args.batch_size,
                          delete_source=args.move, progress=not args.no_progress)
    verb = "moved" if args.move else "copied"
    print(f"{verb} {result.rows} rows of {model.__name__} from {args.source!r} to "
          f"{args.target!r} in {result.batches} batches ({result.strategy}), "
          f"{result.seconds:.2f} s, {result.rows_per_second:.0f} rows/s")
    return 0


def add_transfer(commands: Any) -> None:
    """Declare ``rhosocial-ar transfer``."""
    from .cli_app import APP_VARIABLE

    parser = commands.add_parser(
        "transfer", help="move or copy a model's rows between two connections, atomically",
        description="Copy (or with --move, move) the rows of a model from one named "
        "connection to another, each batch atomic across both databases. After a crash run "
        "`rhosocial-ar recover` and the same command again: it continues where it stopped.",
        epilog="example: rhosocial-ar transfer User --from legacy --to modern --move "
        "--app myapp.settings",
    )
    parser.add_argument("model", metavar="MODEL",
                        help="the model's class name, or module.ClassName when several share it")
    parser.add_argument("--from", dest="source", required=True, metavar="CONNECTION",
                        help="the connection to read the rows from")
    parser.add_argument("--to", dest="target", required=True, metavar="CONNECTION",
                        help="the connection to write the rows to")
    parser.add_argument("--move", action="store_true",
                        help="delete each batch from the source in the same atomic step")
    parser.add_argument("--where", nargs="+", metavar=("SQL", "VALUE"),
                        help="only rows matching a condition with '?' placeholders")
    parser.add_argument("--batch-size", type=int, default=1000, metavar="N",
                        help="rows per batch (default: 1000)")
    parser.add_argument("--recover-first", action="store_true",
                        help="finish in-doubt transactions of an earlier crash before starting")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--app", default=None, metavar="MODULE",
                        help="the module that configures the connections and imports the "
                        f"models, as for `db` (default: ${APP_VARIABLE})")
    parser.set_defaults(handler=_run_transfer)
