"""Finish two-phase transactions left in doubt by a crash.

    report = recover()             # every configured connection
    report = await arecover()      # ... every async one, from async code
    report.committed, report.rolled_back, report.skipped, report.busy

    $ rhosocial-ar recover --app myapp.settings

A prepared branch is committed when the decision log says COMMIT and rolled
back otherwise (presumed abort); before rolling back, recovery records ABORT
itself, so a coordinator still running cannot commit afterwards. Running it
twice, or beside a live coordinator, is safe: a branch that another session
is finishing right now is reported as busy, not raised.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from . import aio, decision_log, dialects
from .connections import Connection, ConnectionManager
from .decision_log import ABORT, COMMIT, XID_PREFIX, Xid
from .errors import InDoubtError
from .mixins import utc_now
from .twophase import support_problem

__all__ = ["RecoveryReport", "arecover", "recover"]

log = logging.getLogger("rhosocial_ar")

# log rows of finished transactions are kept this long, then pruned
KEEP_DECISIONS = timedelta(days=7)


@dataclass
class RecoveryReport:
    """What ``recover()`` did, as (connection name, transaction id) pairs."""

    committed: list[tuple[str, str]] = field(default_factory=list)
    rolled_back: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)   # ... and why
    # being finished by another session (a live coordinator, another recover()) just now
    busy: list[tuple[str, str]] = field(default_factory=list)

    @property
    def in_doubt(self) -> int:
        return len(self.skipped)

    def __str__(self) -> str:
        lines = [f"committed {len(self.committed)}, rolled back {len(self.rolled_back)}, "
                 f"skipped {len(self.skipped)}" + (f", busy {len(self.busy)}" if self.busy else "")]
        lines += [f"  skipped {xid} on {name}: {why}" for name, xid, why in self.skipped]
        return "\n".join(lines)


def _decide(log_connection: Connection, gtrid: str) -> str:
    """The recorded decision, recording ABORT first when there is none."""
    found = decision_log.decision_of(log_connection, gtrid)
    if found is not None:
        return found
    # first writer wins: a coordinator's COMMIT recorded meanwhile stands
    return decision_log.decide(log_connection, gtrid, ABORT)


def _log_connections(connections: list[Connection]) -> dict[str, Connection]:
    return {decision_log.name_tag(c.name): c for c in connections}


def recover(names: list[str] | None = None) -> RecoveryReport:
    """Resolve every in-doubt two-phase branch on the configured connections.

    ``recover()`` examines the sync connections and ``await arecover()`` the
    async ones; the others are reported as skipped (a two-phase transaction
    never spans both kinds).
    """
    report = RecoveryReport()
    everything = []
    for conn in ConnectionManager.connections():
        if conn.is_async is aio.in_bridge():
            everything.append(conn)
        elif not conn.read_only and conn.dialect.name != "sqlite" and (
                names is None or conn.name in names):
            kind, right = ("async", "await arecover()") if conn.is_async else ("sync", "recover()")
            report.skipped.append((conn.name, "-", f"{kind} connection: run {right} for it"))
    targets = [c for c in everything if names is None or c.name in names]
    logs = _log_connections(list(ConnectionManager.connections()))
    decisions: dict[str, str] = {}
    for conn in targets:
        if conn.read_only or conn.dialect.name == "sqlite" or support_problem(conn):
            continue
        with conn.connect() as sa_conn:
            xids = dialects.in_doubt_xids(sa_conn, XID_PREFIX)
        for text in xids:
            _finish(conn, text, logs, decisions, report)
    if len(targets) == len(everything):
        # every connection was examined: a decision none of them still waits on is finished
        _prune(everything, report, _unfinished(report))
    if report.committed or report.rolled_back or report.skipped:
        log.info("recover(): %s", report)
    return report


async def arecover(names: list[str] | None = None) -> RecoveryReport:
    """``recover()`` for the async connections, in the bridge."""
    return await aio.run(recover, names)


def _finish(conn: Connection, text: str, logs: dict[str, Connection],
            decisions: dict[str, str], report: RecoveryReport) -> None:
    xid = Xid.parse(text)
    log_conn = logs.get(xid.log_tag) if xid else None
    if xid is None or log_conn is None:
        report.skipped.append((conn.name, text, "its decision log's connection is not configured"))
        return
    if log_conn.is_async is not aio.in_bridge():
        # a branch of the other kind's transaction, seen through a connection to the same
        # server (MySQL's XA RECOVER is server-wide): the other kind's recovery finishes it
        return
    try:
        if xid.gtrid not in decisions:
            decisions[xid.gtrid] = _decide(log_conn, xid.gtrid)
    except (sa.exc.SQLAlchemyError, InDoubtError) as exc:
        report.skipped.append((conn.name, text, f"decision log on {log_conn.name!r} "
                               f"unreadable: {type(getattr(exc, 'orig', None) or exc).__name__}"))
        return
    commit = decisions[xid.gtrid] == COMMIT
    try:
        with conn.connect().execution_options(isolation_level="AUTOCOMMIT") as sa_conn:
            dialects.finish_prepared(sa_conn, text, commit=commit)
    except sa.exc.DBAPIError as exc:
        if _busy(exc):
            report.busy.append((conn.name, text))     # its coordinator is finishing it
            return
        if dialects.is_empty_branch_gone(exc):       # nothing to apply: finished either way
            (report.committed if commit else report.rolled_back).append((conn.name, text))
            return
        if not dialects.is_unknown_xid(exc):
            raise
        # finished by someone else meanwhile, or (MySQL) its session is still alive
        report.skipped.append((conn.name, text, "not available: finished elsewhere or its "
                               "coordinator's session is still open"))
        return
    (report.committed if commit else report.rolled_back).append((conn.name, text))


def _busy(exc: sa.exc.DBAPIError) -> bool:
    """Another session is finishing this prepared transaction (SQLSTATE 55000)."""
    orig = exc.orig
    return (getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)) == "55000"


def _unfinished(report: RecoveryReport) -> set[str]:
    """Global ids with a branch still prepared after this run."""
    left = [xid for _, xid, _ in report.skipped] + [xid for _, xid in report.busy]
    return {parsed.gtrid for parsed in map(Xid.parse, left) if parsed is not None}


def _prune(log_connections: object, report: RecoveryReport, keep: set[str]) -> None:
    """Drop decisions older than ``KEEP_DECISIONS`` from every log table, but those in ``keep``."""
    cutoff = utc_now() - KEEP_DECISIONS
    table = decision_log.log_table
    for conn in log_connections:  # type: ignore[attr-defined]
        if conn.read_only:
            continue
        try:
            if not decision_log.has_table(conn):
                continue
            with conn.engine.begin() as sa_conn:
                sa_conn.execute(table.delete().where(
                    table.c.decided_at < cutoff, table.c.gtrid.not_in(sorted(keep))))
        except sa.exc.SQLAlchemyError as exc:
            # pruning is housekeeping; an unreachable database is reported, not fatal
            report.skipped.append((conn.name, "-", f"log not pruned: {type(exc).__name__}"))
