#!/usr/bin/env python3
"""Move or copy the rows of one model from one named connection to another.

    python scripts/transfer_rows.py --app myapp.settings User --from legacy --to modern --move
    python scripts/transfer_rows.py --app myapp.settings User --from a --to b --where "id > ?" 1000

``--app`` names the module that configures the connections and defines the
models. Every batch is atomic across both databases (two-phase commit, or
last-resource commit when one side is SQLite); after a crash run
``rhosocial-ar recover`` and the same command again: it continues where it
stopped and every row ends up exactly once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from rhosocial_ar import ARError, ConnectionManager, recover, registry, transfer


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="transfer_rows.py",
        description="Move (or copy) the rows of a model between two named connections, "
                    "each batch atomic across both databases.",
        epilog="Example: transfer_rows.py --app myapp.settings User --from legacy --to modern "
               "--move")
    parser.add_argument("model", help="the model's class name (defined by the app module)")
    parser.add_argument("--app", default=os.environ.get("RHOSOCIAL_AR_APP"),
                        help="module that configures connections and imports the models "
                             "(default: $RHOSOCIAL_AR_APP)")
    parser.add_argument("--from", dest="source", required=True, metavar="CONNECTION",
                        help="connection to read the rows from")
    parser.add_argument("--to", dest="target", required=True, metavar="CONNECTION",
                        help="connection to write the rows to")
    parser.add_argument("--move", action="store_true",
                        help="delete each batch from the source in the same atomic step")
    parser.add_argument("--where", nargs="+", metavar=("SQL", "VALUE"),
                        help="only rows matching a condition with '?' placeholders")
    parser.add_argument("--batch-size", type=int, default=1000, help="rows per batch (1000)")
    parser.add_argument("--recover-first", action="store_true",
                        help="finish in-doubt transactions of an earlier crash before starting")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def find_model(name: str, app: Any) -> Any:
    found = getattr(app, name, None)
    if found is not None and hasattr(found, "__ar_meta__"):
        return found
    candidates = registry.models_named(name)
    if not candidates:
        raise ARError(f"no model named {name!r} in {app.__name__} or the modules it imports")
    return candidates[-1]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        if not args.app:
            raise ARError("name the app module with --app or RHOSOCIAL_AR_APP")
        sys.path.insert(0, os.getcwd())
        try:
            app = importlib.import_module(args.app)
        except ModuleNotFoundError as exc:
            raise ARError(f"cannot import the app module {args.app!r}: {exc}") from None
        model = find_model(args.model, app)
        for name in (args.source, args.target):
            ConnectionManager.get(name)
        if args.recover_first:
            print(f"recover: {recover()}")
        query = model.using(args.source)
        if args.where:
            query = query.where(args.where[0], *args.where[1:])
        with model.using_connection(args.target):
            result = transfer(query, model, batch_size=args.batch_size,
                              delete_source=args.move, progress=not args.no_progress)
    except Exception as exc:  # a command-line tool: one readable line, no traceback
        print(f"transfer_rows.py: error: {type(exc).__name__}: {exc}".splitlines()[0],
              file=sys.stderr)
        return 1
    verb = "moved" if args.move else "copied"
    print(f"{verb} {result.rows} rows of {model.__name__} from {args.source!r} to "
          f"{args.target!r} in {result.batches} batches ({result.strategy}), "
          f"{result.seconds:.2f} s, {result.rows_per_second:.0f} rows/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
