"""``rhosocial-ar shards``: look at and move a sharded model's rows.

    $ rhosocial-ar shards counts Invoice --app myapp.settings
    $ rhosocial-ar shards rebalance Invoice --to s0 s1 s2 s3 --app myapp.settings
    $ rhosocial-ar shards rebalance Invoice --to s0 s1 s2 --ranges 1000 5000 --app myapp.settings

``--app`` names what configures the connections and defines the models, as
for ``rhosocial-ar transfer``. ``rebalance`` moves every row whose shard under
the new map is not the one it is on (rebalance.py), prints the counts per
shard before and after, and exits 1 when they do not add up. After a kill,
the same command again finishes the move.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from .errors import CommandError

__all__ = ["add_shards"]


def _sharded_model(name: str) -> Any:
    from .cli_transfer import find_model

    model = find_model(name)
    if getattr(model, "__shards__", None) is None:
        raise CommandError(f"{model.__name__} is not sharded (it declares no __shards__)")
    return model


def _run_counts(args: argparse.Namespace) -> int:
    """Rows per shard of the model, and the total."""
    from .cli_app import load_configured_app

    load_configured_app(args.app)
    model = _sharded_model(args.model)
    counts = {shard: model.on_shard(shard).with_deleted().count() for shard in model.__shards__}
    width = max(len(s) for s in [*counts, "total"])
    for shard, count in counts.items():
        print(f"{shard:<{width}}  {count:>9}")
    print(f"{'total':<{width}}  {sum(counts.values()):>9}")
    return 0


def _mapping(args: argparse.Namespace) -> Any:
    """The new map's ``__shard_by__`` from --ranges / --by; None keeps the model's."""
    if args.ranges and args.by:
        raise CommandError("give --ranges or --by, not both")
    if args.ranges:
        from .sharding import shard_ranges

        return shard_ranges(*(int(b) if b.lstrip("-").isdigit() else b for b in args.ranges))
    if args.by:
        if args.by == "hash":
            return "hash"
        module, _, attribute = args.by.partition(":")
        found = getattr(importlib.import_module(module), attribute, None) if attribute else None
        if found is None:
            raise CommandError(f"--by {args.by!r}: give 'hash' or MODULE:NAME of a function "
                               f"(or shard_ranges(...)) the module defines")
        return found
    return None


def _run_rebalance(args: argparse.Namespace) -> int:
    """Move the rows, print the report; exit 1 when the counts do not add up."""
    from .cli_app import load_configured_app
    from .rebalance import rebalance

    load_configured_app(args.app)
    model = _sharded_model(args.model)
    declared = list(model.__shards__)
    report = rebalance(model, args.to, _mapping(args), batch_size=args.batch_size,
                       progress=not args.no_progress)
    print(report)
    if declared != list(report.new_shards):
        print(f"now declare {model.__name__}.__shards__ = {list(report.new_shards)} in the app "
              f"(and deploy it) so that it reads and writes by the new map")
    return 0 if report.matches else 1


def add_shards(commands: Any) -> None:
    """Declare ``rhosocial-ar shards`` and its subcommands."""
    from .cli_app import APP_VARIABLE

    parser = commands.add_parser(
        "shards", help="count and rebalance the rows of a sharded model",
        description="Commands over the shards of a model that declares __shards__.")
    sub = parser.add_subparsers(dest="shards_command", metavar="SUBCOMMAND", required=True)
    app_help = (f"the module that configures the connections and imports the models, as for "
                f"`db` (default: ${APP_VARIABLE})")

    counts = sub.add_parser("counts", help="rows per shard",
                            description="Print how many rows (soft-deleted ones too) each shard "
                            "of the model holds.")
    counts.add_argument("model", metavar="MODEL",
                        help="the model's class name, or module.ClassName when several share it")
    counts.add_argument("--app", default=None, metavar="MODULE", help=app_help)
    counts.set_defaults(handler=_run_counts)

    move = sub.add_parser(
        "rebalance", help="move rows to the shards a new shard map gives them",
        description="Scan every shard of the old and the new map and move each row whose "
        "shard changed with transfer(), in atomic batches; then print the rows per shard "
        "before and after. Primary keys move with the rows, so they must be unique across "
        "shards (checked before anything moves). Killed midway, the same command again "
        "finishes the move (in-doubt two-phase batches are recovered first).",
        epilog="example: rhosocial-ar shards rebalance Invoice --to s0 s1 s2 s3 "
        "--app myapp.settings",
    )
    move.add_argument("model", metavar="MODEL",
                      help="the model's class name, or module.ClassName when several share it")
    move.add_argument("--to", nargs="+", required=True, metavar="CONNECTION",
                      help="the new map's shards, in order (append new ones at the end)")
    move.add_argument("--ranges", nargs="+", metavar="BOUND",
                      help="the new map is shard_ranges(BOUND, ...): one bound fewer than shards")
    move.add_argument("--by", default=None, metavar="MODULE:NAME",
                      help="the new map's __shard_by__: 'hash', or a function the module defines "
                      "(default: the model's)")
    move.add_argument("--batch-size", type=int, default=1000, metavar="N",
                      help="rows per atomic batch (default: 1000)")
    move.add_argument("--no-progress", action="store_true", help="no progress bar")
    move.add_argument("--app", default=None, metavar="MODULE", help=app_help)
    move.set_defaults(handler=_run_rebalance)
