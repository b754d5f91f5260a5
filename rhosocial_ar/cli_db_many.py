"""``rhosocial-ar db ... --shards MODEL_OR_GROUP`` and ``--tenants``: one chain, many databases.

    $ rhosocial-ar db revision --shards Invoice -m "invoices" --autogenerate --app myapp
    $ rhosocial-ar db upgrade --shards Invoice --app myapp   # shard after shard; stops at a failure
    $ rhosocial-ar db upgrade --tenants --app myapp          # every tenant; failures listed at the end

The work is ``rhosocial_ar.migrate_many``'s; this module prints it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import CommandError, describe_error

__all__ = ["add_many", "run_many"]

_DONE = {"upgrade": "upgraded", "downgrade": "downgraded", "stamp": "stamped"}


def add_many(parser: argparse.ArgumentParser, which: Any) -> None:
    """Add --shards and --tenants to a subcommand's -c/--all group, and --tenant ID."""
    which.add_argument(
        "--shards", metavar="MODEL_OR_GROUP",
        help="every shard of a sharded model's group (or of a shard group), in __shards__ order; "
        "the group's chain is DIR/shards/GROUP/versions")
    which.add_argument(
        "--tenants", action="store_true",
        help="every tenant (register_tenants(..., tenants=...) lists them); the tenants' chain is "
        "DIR/tenants/versions")
    parser.add_argument("--tenant", action="append", metavar="ID",
                        help="with --tenants: this tenant only (repeatable)")
    parser.add_argument("--no-progress", action="store_true",
                        help="with --tenants: no progress bar (it only shows on a terminal anyway)")


def run_many(args: argparse.Namespace) -> int:
    """One ``db`` subcommand with --shards or --tenants."""
    if args.tenant and not args.tenants:
        raise CommandError("--tenant ID goes with --tenants")
    if getattr(args, "sql", False):
        raise CommandError("--sql prints one connection's script: give -c NAME (a shard, say); "
                           "every shard of a group runs the same revisions")
    command = args.db_command
    if command in ("revision", "history", "heads"):
        _files(args)
        return 0
    if command == "check":
        return _check(args)
    if args.shards is not None:
        return _shards(args)
    return _tenants(args)


def _files(args: argparse.Namespace) -> None:
    """revision, history, heads: the chain's files (autogenerate reads one shard or tenant)."""
    from . import migrate_many

    label = _label(args)
    if args.db_command == "revision":
        if args.shards is not None:
            path = migrate_many.revision_shards(args.shards, args.message, args.autogenerate,
                                                args.directory)
        else:
            path = migrate_many.revision_tenants(args.message, args.autogenerate, args.directory,
                                                 tenant_id=(args.tenant or [None])[0])
        print(f"{label}: " + (f"wrote {_shown(path)}" if path is not None else
                              "no changes: the database matches the models; no revision written"))
        return
    revisions = (migrate_many.history_shards(args.shards, args.directory) if args.shards is not None
                 else migrate_many.history_tenants(args.directory))
    if args.db_command == "heads":
        for rev in revisions:
            if rev.is_head:
                print(f"{label}: {rev.revision} (head), {rev.message}")
        return
    print(f"{label}:")
    for rev in revisions:
        down = rev.down_revision
        parent = ", ".join(down) if isinstance(down, tuple) else down or "<base>"
        print(f"  {parent} -> {rev.revision}{' (head)' if rev.is_head else ''}, {rev.message}")


def _check(args: argparse.Namespace) -> int:
    """Each shard's or tenant's differences; exit 1 when any has some."""
    from . import migrate_many

    found = (migrate_many.check_shards(args.shards, args.directory) if args.shards is not None
             else migrate_many.check_tenants(args.directory, tenants=args.tenant))
    for name, lines in found.items():
        if not lines:
            print(f"{name}: the database matches the models")
            continue
        print(f"{name}: {len(lines)} difference{'s' if len(lines) > 1 else ''}")
        for line in lines:
            print(f"  - {line}")
    differ = [name for name, lines in found.items() if lines]
    if differ:
        raise CommandError(f"models and database differ on {', '.join(map(repr, differ))} "
                           f"(listed above)")
    return 0


def _label(args: argparse.Namespace) -> str:
    from .migrate_groups import find_group

    return f"shards {find_group(args.shards).name}" if args.shards is not None else "tenants"


def _shards(args: argparse.Namespace) -> int:
    """Each shard's lines as it runs; the first failure ends the run and the command."""
    from . import migrate_many

    command = args.db_command
    tips = migrate_many.heads_shards(args.shards, args.directory)
    prefix = [""]

    def start(name: str) -> None:
        prefix[0] = name

    def result(outcome: migrate_many.Outcome) -> None:
        if outcome.error is not None:
            print(f"{outcome.target}: failed: {describe_error(outcome.error)}")
        elif command == "current":
            print(f"{outcome.target}: {_where(outcome.after, tips)}")
        else:
            moved = "already at" if outcome.before == outcome.after else "now at"
            print(f"{outcome.target}: {moved} {_where(outcome.after, tips)}")

    if command == "current":
        report = migrate_many.current_shards(args.shards, args.directory)
        for outcome in report.results.values():
            result(outcome)
    else:
        step = getattr(migrate_many, f"{command}_shards")
        with _running_lines(prefix):
            report = step(args.shards, args.revision, args.directory, on_start=start, on_result=result)
    for name in report.not_run:
        print(f"{name}: not run")
    if report.failed:
        failed = ", ".join(map(repr, report.failed))
        rest = " (the later shards were not touched)" if report.not_run else ""
        raise CommandError(f"{report.what}: shard {failed} failed{rest}; run the command again "
                           f"once it is fixed: the shards already done are left as they are")
    return 0


def _tenants(args: argparse.Namespace) -> int:
    """A progress bar while the tenants run, then a count of each kind and every failure."""
    from . import migrate_many

    command = args.db_command
    if command == "current":
        report = migrate_many.current_tenants(args.directory, tenants=args.tenant)
        tips = migrate_many.heads_tenants(args.directory)
        for outcome in report.results.values():
            shown = (f"failed: {describe_error(outcome.error)}" if outcome.error is not None
                     else _where(outcome.after, tips))
            print(f"{outcome.target}: {shown}")
    else:
        step = getattr(migrate_many, f"{command}_tenants")
        report = step(args.revision, args.directory, tenants=args.tenant,
                      progress=not args.no_progress)
        moved = sum(o.changed for o in report.results.values())
        still = len(report.results) - moved - len(report.failed)
        print(f"tenants: {moved} {_DONE[command]}, {still} already there, "
              f"{len(report.failed)} failed")
        for name, outcome in report.results.items():
            if outcome.error is not None:
                print(f"  {name}: {describe_error(outcome.error)}")
    if report.failed:
        raise CommandError(f"{len(report.failed)} of {len(report.results)} tenants failed (listed "
                           f"above); run the command again once fixed: the tenants done are left "
                           f"as they are")
    return 0


def _where(at: tuple[str, ...] | None, tips: tuple[str, ...]) -> str:
    shown = ", ".join(at or ()) or "<base>"
    return f"{shown} (head)" if set(at or ()) == set(tips) else f"{shown} (head is {', '.join(tips)})"


@contextmanager
def _running_lines(prefix: list[str]) -> Iterator[None]:
    """Alembic's 'Running upgrade ...' lines on stdout, each after the shard it runs on."""
    log = logging.getLogger("alembic.runtime.migration")

    class Prefixed(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"{prefix[0]}: {record.getMessage()}"

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(Prefixed())
    handler.addFilter(lambda record: record.getMessage().startswith("Running "))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
