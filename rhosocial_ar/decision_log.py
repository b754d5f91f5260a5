"""The decision log of coordinated two-phase commits.

    ensure_table(get_connection('orders'))
    decide(get_connection('orders'), gtrid, COMMIT)      # the decision that stands
    decision_of(get_connection('orders'), gtrid)         # 'commit' | 'abort' | None

One table, ``rhosocial_ar_2pc_log``, in one participant database per
transaction. Its primary key is the global transaction id, so a recovery
that decides *abort* and a late coordinator that decides *commit* cannot
both win: the second insert fails. No row means abort (presumed abort).

A write whose COMMIT got no answer (the connection dropped) may or may not
have landed; ``decide()`` then looks again on a fresh connection and never
guesses: it returns the decision it finds, or raises ``InDoubtError``.
"""

from __future__ import annotations

import hashlib
import uuid
import weakref

import sqlalchemy as sa

from . import fastpath
from .connections import Connection
from .errors import InDoubtError
from .mixins import utc_now

__all__ = ["ABORT", "COMMIT", "XID_PREFIX", "Xid", "decide", "decision_of", "ensure_table",
           "record"]

COMMIT, ABORT = "commit", "abort"
XID_PREFIX = "rar_"

_metadata = sa.MetaData()
log_table = sa.Table(
    "rhosocial_ar_2pc_log", _metadata,
    sa.Column("gtrid", sa.String(64), primary_key=True),
    sa.Column("decision", sa.String(8), nullable=False),
    sa.Column("decided_at", sa.DateTime, nullable=False),
)

# built once, so the fast path compiles them once per dialect (one transfer writes both per batch)
_record = log_table.insert()
_forget = log_table.delete().where(log_table.c.gtrid == sa.bindparam("gtrid"))

# engines whose database has the table: looked for once per engine, not per transaction
_present: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def name_tag(connection_name: str) -> str:
    """A short stable tag of a connection name, to fit it in a transaction id."""
    return hashlib.sha1(connection_name.encode()).hexdigest()[:8]


class Xid:
    """``rar_<gtrid>_<branch>_<tag of the log's connection>``: at most 48 bytes."""

    __slots__ = ("gtrid", "branch", "log_tag")

    def __init__(self, gtrid: str, branch: int, log_tag: str) -> None:
        self.gtrid, self.branch, self.log_tag = gtrid, branch, log_tag

    @classmethod
    def new_gtrid(cls) -> str:
        return uuid.uuid4().hex

    @classmethod
    def parse(cls, text: str) -> Xid | None:
        parts = text.split("_")
        if len(parts) != 4 or f"{parts[0]}_" != XID_PREFIX or not parts[2].isdigit():
            return None
        return cls(parts[1], int(parts[2]), parts[3])

    def __str__(self) -> str:
        return f"{XID_PREFIX}{self.gtrid}_{self.branch:02d}_{self.log_tag}"


def ensure_table(connection: Connection) -> None:
    """Create the log table where it is missing (outside any transaction); once per engine.

    Coordinators starting at once may all find it missing; those whose
    CREATE loses the race find the table the winner made.
    """
    if connection.engine in _present:
        return
    try:
        log_table.create(connection.engine, checkfirst=True)
    except sa.exc.DBAPIError:
        if not has_table(connection):
            raise
    _present.add(connection.engine)


class _Unacknowledged(Exception):
    """The COMMIT of a log write failed: the row may or may not be there."""


def record(target: Connection | sa.Connection, gtrid: str, decision: str) -> None:
    """Insert the decision; raises IntegrityError when one is already recorded.

    Given a ``Connection`` it commits at once (durable before returning);
    given a SQLAlchemy connection it writes inside that connection's transaction.
    Prefer ``decide()``, which also settles a write whose COMMIT got no answer.
    """
    if isinstance(target, Connection):
        try:
            _insert(target, gtrid, decision)
        except _Unacknowledged as lost:
            raise lost.args[0]      # noqa: B904 - the driver's error, as before decide() existed
        return
    try:
        fastpath.write(target, _record, _row(gtrid, decision))
    except sa.exc.DBAPIError:
        _present.discard(target.engine)     # perhaps the table was dropped: look again next time
        raise


def decide(connection: Connection, gtrid: str, decision: str) -> str:
    """Record ``decision`` unless one is recorded already; return the decision that stands.

    An error before the COMMIT propagates (nothing was recorded). When the
    COMMIT itself fails, the log is read on a fresh connection and, if the row
    is not there, written once more; if that cannot settle it, ``InDoubtError``.
    """
    try:
        _insert(connection, gtrid, decision)
        return decision
    except sa.exc.IntegrityError:
        return _beaten(connection, gtrid)
    except _Unacknowledged as lost:
        first = lost.args[0]
    try:
        return _standing(connection, gtrid)
    except LookupError:
        pass                # the write did not land (its session ended without COMMIT)
    except sa.exc.SQLAlchemyError as exc:
        raise _in_doubt(connection, gtrid, decision, first) from exc
    try:
        _insert(connection, gtrid, decision)
        return decision
    except sa.exc.IntegrityError:
        return _beaten(connection, gtrid)
    except (_Unacknowledged, sa.exc.SQLAlchemyError) as exc:
        raise _in_doubt(connection, gtrid, decision, first) from exc


def _in_doubt(connection: Connection, gtrid: str, decision: str, cause: BaseException,
              ) -> InDoubtError:
    return InDoubtError(
        f"the {decision.upper()} decision of {gtrid} was written to {connection.name!r} but not "
        f"acknowledged ({type(getattr(cause, 'orig', None) or cause).__name__}), and the log "
        f"could not be read again; its prepared branches are left to recover()", gtrid)


def _standing(connection: Connection, gtrid: str) -> str:
    """The recorded decision, read on a fresh connection; LookupError when there is none."""
    found = decision_of(connection, gtrid)
    if found is None:
        raise LookupError(gtrid)
    return found


def _beaten(connection: Connection, gtrid: str) -> str:
    """The decision that was recorded before ours."""
    found = decision_of(connection, gtrid)
    # gone already: only a coordinator deletes its row, once its COMMIT is done
    # everywhere (ABORT rows stay until pruned)
    return found if found is not None else COMMIT


def _row(gtrid: str, decision: str) -> dict[str, object]:
    return {"gtrid": gtrid, "decision": decision, "decided_at": utc_now()}


def _insert(connection: Connection, gtrid: str, decision: str) -> None:
    """Write and commit one decision; ``_Unacknowledged`` when the COMMIT fails."""
    try:
        with connection.side_engine().connect() as conn:
            conn.begin()
            fastpath.write(conn, _record, _row(gtrid, decision))
            try:
                conn.commit()
            except sa.exc.IntegrityError:
                raise
            except sa.exc.DBAPIError as exc:
                raise _Unacknowledged(exc) from exc
    except sa.exc.DBAPIError:
        _present.discard(connection.engine)     # perhaps the table was dropped: look again
        raise


def decision_of(connection: Connection, gtrid: str) -> str | None:
    with connection.side_engine().connect() as conn:
        found = conn.execute(
            sa.select(log_table.c.decision).where(log_table.c.gtrid == gtrid)
        ).scalar()
    return str(found) if found is not None else None


def forget(connection: Connection, gtrid: str) -> None:
    """Delete a finished transaction's row (its branches are all committed)."""
    with connection.side_engine().begin() as conn:
        fastpath.write(conn, _forget, {"gtrid": gtrid})


def has_table(connection: Connection) -> bool:
    return sa.inspect(connection.engine).has_table(log_table.name)
