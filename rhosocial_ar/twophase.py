"""Two-phase commit: one prepared transaction by hand, or coordinated across connections.

    with two_phase('orders', 'billing'):        # prepare both, log the decision, commit both
        Order.create(...)                       # on 'orders'
        Invoice.create(...)                     # on 'billing'

    async with two_phase('orders', 'billing'):  # async connections: the same, in the bridge
        await Order.acreate(...)

    tx = Transaction(get_connection('orders'), two_phase=True)
    with tx:                                    # scopes work; does not end the transaction
        Order.create(...)
    tx.prepare(); tx.commit()                   # or tx.rollback()

The coordinator prepares every participant, records the commit decision in
the decision log (a table in a participant database), then commits each.
Anything failing before the decision rolls all back; after it, ``recover()``
finishes what is left. When the outcome of writing the decision is unknown
(its COMMIT got no answer), the log is read again on a fresh connection;
if that cannot tell, ``InDoubtError`` is raised and nothing is rolled back.
One participant without prepared transactions (SQLite) may join: it commits
last, with the decision row inside its own transaction (last-resource commit).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from contextvars import Token
from typing import Any

import sqlalchemy as sa

from . import aio, decision_log, dialects
from .connections import Connection, get_connection
from .errors import ARError, ConfigurationError, InDoubtError, TwoPhaseAborted, TwoPhaseNotSupported
from .transaction import Frame, Transaction, bind, check_bindable, current_frame, ended, unbind

__all__ = ["TwoPhaseTransaction", "two_phase"]

log = logging.getLogger("rhosocial_ar")

# test seam: called at each step of the protocol with the step's name, so the
# crash tests can kill the process exactly there
crash_point: Callable[[str], None] = lambda step: None  # noqa: E731

# per engine, forgotten with it: an id() could be reused by a later engine
_support: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()


def support_problem(connection: Connection) -> str | None:
    """Why ``connection`` cannot prepare transactions (checked once per engine), or None."""
    engine = connection.engine
    if engine not in _support:
        aio.check(connection)      # it asks the database: an async one only in the bridge
        _support[engine] = dialects.two_phase_problem(engine)
    return _support[engine]


def require_support(connection: Connection) -> None:
    problem = support_problem(connection)
    if problem is not None:
        raise TwoPhaseNotSupported(f"connection {connection.name!r}: {problem}")


class TwoPhaseTransaction(Transaction, two_phase=True):
    """A transaction that is prepared and then committed or rolled back explicitly.

    ``Transaction(..., two_phase=True)`` builds one (the class keyword registers it).
    """

    def __init__(self, connection: Connection | str | None = None, *,
                 isolation_level: str | None = None, two_phase: bool = True,
                 xid: str | None = None) -> None:
        super().__init__(connection, isolation_level=isolation_level)
        if not self.connection.is_async or aio.in_bridge():
            require_support(self.connection)   # else as its block opens, in the bridge
        self.xid = xid
        self.state = "new"          # new -> active -> prepared -> committed | rolled back
        self._branch: Frame | None = None
        self._scope: Token[Any] | None = None

    def _begin(self) -> Frame:
        sa_conn = self.connection.connect()
        try:
            if self.isolation_level:
                sa_conn.execution_options(isolation_level=self.isolation_level)
            sa_tx = sa_conn.begin_twophase(self.xid)
        except BaseException:
            sa_conn.close()
            raise
        self.xid = sa_tx.xid
        self.state = "active"
        return Frame(self.connection, sa_conn, sa_tx, None)

    def __enter__(self) -> TwoPhaseTransaction:
        if self._scope is not None:
            raise ARError("this transaction's block is already open")
        if self.state not in ("new", "active"):
            raise ARError(f"the two-phase transaction is {self.state}; no more work can join it")
        if current_frame(self.connection.name) is not None:
            raise ConfigurationError(
                f"a transaction is already open on {self.connection.name!r}; a two-phase "
                f"transaction cannot be nested in it"
            )
        if self._branch is None:
            require_support(self.connection)
            check_bindable(self.connection.name)    # before XA START / BEGIN goes out
            self._branch = self._begin()
        self._scope = bind(self._branch)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._scope is not None
        unbind(self._scope)
        self._scope = None
        if exc_type is not None:
            self.rollback()

    def prepare(self) -> None:
        """Phase one: the database promises it can commit (PREPARE TRANSACTION / XA PREPARE)."""
        branch = self._require("active", "prepare")
        try:
            branch.sa_tx.prepare()
        except BaseException:
            self._discard(branch, rolled_back=True)
            raise
        self.state = "prepared"

    def commit(self) -> None:
        """Phase two (prepares first if needed); a failure after prepare raises ``InDoubtError``."""
        if self.state == "active":
            self.prepare()
        branch = self._require("prepared", "commit")
        try:
            branch.sa_tx.commit()
        except BaseException as exc:
            self._discard(branch, rolled_back=False)
            self.state = "in doubt"
            if not isinstance(exc, sa.exc.DBAPIError) or not self._commit_elsewhere():
                raise InDoubtError(
                    f"commit of prepared transaction {self.xid} on {self.connection.name!r} "
                    f"failed ({type(exc).__name__}); its outcome is in doubt", str(self.xid)
                ) from exc
        else:
            branch.sa_conn.close()
        self.state = "committed"
        ended(branch, committed=True)

    async def aprepare(self) -> None:
        await aio.run(self.prepare)

    async def acommit(self) -> None:
        await aio.run(self.commit)

    async def aabandon(self) -> None:
        await aio.run(self.abandon)

    async def arollback(self) -> None:
        await aio.run(self.rollback)

    def _commit_elsewhere(self) -> bool:
        """COMMIT PREPARED from a fresh session, as the first failed; True once it is done.

        Once the commit is decided nobody rolls the branch back, so a branch that is
        no longer prepared has committed (a recover() may have finished it first).
        """
        for attempt in range(5):
            try:
                with self.connection.connect().execution_options(
                        isolation_level="AUTOCOMMIT") as sa_conn:
                    try:
                        dialects.finish_prepared(sa_conn, str(self.xid), commit=True)
                        return True
                    except sa.exc.DBAPIError as exc:
                        log.debug("second commit of %s failed: %s", self.xid, exc.orig)
                    if str(self.xid) not in dialects.in_doubt_xids(sa_conn, str(self.xid)):
                        return True
            except sa.exc.DBAPIError as exc:     # the database is out of reach: recover() will do
                log.debug("no fresh session for %s: %s", self.xid, exc.orig)
            aio.sleep(0.05 * 2 ** attempt)        # busy: another session is finishing it
        return False

    def abandon(self) -> None:
        """Leave a prepared transaction to ``recover()``: close its session, end nothing."""
        if self.state != "prepared" or self._branch is None:
            self.rollback()
            return
        self._discard(self._branch, rolled_back=False)
        self.state = "in doubt"

    def rollback(self) -> None:
        """Undo the transaction, prepared or not; does nothing once it has ended."""
        branch = self._branch
        if branch is None or self.state not in ("active", "prepared"):
            self.state = "rolled back" if self.state == "new" else self.state
            return
        try:
            branch.sa_tx.rollback()
        except sa.exc.DBAPIError as exc:
            if self.state == "prepared":
                raise                      # a prepared branch outlives its connection
            # never prepared: closing the connection ends it on the server. MariaDB,
            # for one, refuses XA END once a deadlock has rolled the branch back
            log.debug("rollback of unprepared branch %s failed (%s); closing its connection",
                      self.xid, exc.orig)
            branch.sa_conn.invalidate()
        finally:
            self._discard(branch, rolled_back=True)

    def _require(self, state: str, action: str) -> Frame:
        if self._scope is not None:
            raise ARError(f"cannot {action} inside the transaction's own block")
        if self.state != state or self._branch is None:
            raise ARError(f"cannot {action} a two-phase transaction that is {self.state}")
        return self._branch

    def _discard(self, branch: Frame, rolled_back: bool) -> None:
        # a psycopg2 connection can come back from a failed prepared transaction
        # still in its prepared state; never return such a connection to the pool
        if self.state == "prepared" or not rolled_back:
            branch.sa_conn.invalidate()
        branch.sa_conn.close()
        if rolled_back:
            self.state = "rolled back"
            ended(branch, committed=False)

    @property
    def sa_connection(self) -> sa.Connection:
        if self._branch is None:
            raise ARError("the transaction has not begun")
        return self._branch.sa_conn

    def __repr__(self) -> str:
        return f"<TwoPhaseTransaction {self.connection.name!r} {self.xid} {self.state}>"


class two_phase:  # noqa: N801 - used like a function: with two_phase('a', 'b'): ...
    """Coordinate one atomic transaction across several connections.

    ``async with`` on async connections: the same protocol, run in the bridge.
    """

    def __init__(self, *names: str) -> None:
        if len(names) < 2 or len(set(names)) != len(names):
            raise ConfigurationError("two_phase() takes two or more distinct connection names")
        connections = [get_connection(n) for n in names]
        for conn in connections:
            if conn.read_only:
                raise ConfigurationError(f"connection {conn.name!r} is read-only")
        self.connections = connections
        self.branches: list[TwoPhaseTransaction] = []
        self._last: Transaction | None = None       # the last resource's, while its block is open
        self._last_frame: Frame | None = None       # then its transaction, until we end it
        # what follows asks the databases: for async connections, as the block opens
        self._set_up = False
        if not any(c.is_async for c in connections) or aio.in_bridge():
            self._set_up_participants()

    def _set_up_participants(self) -> None:
        """Which participant commits last, where the decision is logged, and the branches."""
        self._set_up = True
        connections = self.connections
        problems = {c.name: support_problem(c) for c in connections}
        lacking = [n for n, p in problems.items() if p is not None]
        if len(lacking) > 1:
            details = "; ".join(f"{n}: {problems[n]}" for n in lacking)
            raise TwoPhaseNotSupported(
                f"at most one participant may lack two-phase commit (it commits last); "
                f"{len(lacking)} do: {details}"
            )
        self.last_resource = next((c for c in connections if c.name in lacking), None)
        self.log_connection = self.last_resource or connections[0]
        decision_log.ensure_table(self.log_connection)
        self.gtrid = decision_log.Xid.new_gtrid()
        tag = decision_log.name_tag(self.log_connection.name)
        self.branches = [
            TwoPhaseTransaction(conn, xid=str(decision_log.Xid(self.gtrid, i, tag)))
            for i, conn in enumerate(c for c in connections if c is not self.last_resource)
        ]

    def __enter__(self) -> two_phase:
        if not self._set_up:
            self._set_up_participants()
        entered: list[Any] = []
        try:
            for branch in self.branches:
                branch.__enter__()
                entered.append(branch)
            if self.last_resource is not None:
                self._last = Transaction(self.last_resource)
                self._last.__enter__()
        except BaseException:
            for branch in reversed(entered):
                branch.__exit__(None, None, None)
            self._rollback_all()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._last is not None:
            # its block closes first (scopes unwind in reverse); we end its transaction below
            self._last_frame = self._last.detach()
            self._last = None
        for branch in reversed(self.branches):
            branch.__exit__(None, None, None)
        if exc_type is not None:
            self._rollback_all()
            return
        self._finish()

    async def __aenter__(self) -> two_phase:
        return await aio.run(self.__enter__)

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await aio.run(self.__exit__, exc_type, exc, tb)

    def _finish(self) -> None:
        try:
            crash_point("before_prepare")
            for i, branch in enumerate(self.branches):
                if i:
                    crash_point("between_prepares")
                branch.prepare()
            crash_point("after_prepares")
            self._decide()
        except InDoubtError:
            self._abandon_all()            # the decision may be COMMIT: roll nothing back
            raise
        except BaseException:
            self._rollback_all()
            raise
        # decided: every participant commits, and nothing from here on rolls back; an
        # after_commit hook's error is raised once all have committed
        hook_errors: list[Exception] = []
        last, self._last_frame = self._last_frame, None
        if last is not None:
            try:
                last.sa_conn.close()
                ended(last, committed=True)
            except Exception as exc:  # raised below, once the branches have committed
                hook_errors.append(exc)
        crash_point("after_decision")
        failed = []
        for i, branch in enumerate(self.branches):
            if i:
                crash_point("between_commits")
            try:
                branch.commit()
            except InDoubtError as exc:
                failed.append(exc)
            except Exception as exc:  # its after_commit hook's: the branch has committed
                hook_errors.append(exc)
        if failed:
            raise InDoubtError(
                f"two-phase transaction {self.gtrid} was decided commit, but "
                f"{len(failed)} participant(s) did not confirm; run recover() to finish it",
                self.gtrid,
            ) from failed[0]
        crash_point("after_commits")
        try:
            decision_log.forget(self.log_connection, self.gtrid)
        except sa.exc.SQLAlchemyError:
            # committed everywhere; a leftover row only costs recover() a lookup
            log.warning("could not remove the log row of %s", self.gtrid, exc_info=True)
        if hook_errors:
            raise hook_errors[0]

    def _decide(self) -> None:
        """Durably record COMMIT: first writer wins against a recovery's ABORT.

        Raises ``InDoubtError`` when whether COMMIT was recorded cannot be known.
        """
        if self._last_frame is not None:
            standing = self._decide_with_last(self._last_frame)
        else:
            standing = decision_log.decide(self.log_connection, self.gtrid, decision_log.COMMIT)
        if standing != decision_log.COMMIT:
            raise TwoPhaseAborted(
                f"two-phase transaction {self.gtrid} was already decided abort (by recover()); "
                f"every participant rolls back"
            )

    def _decide_with_last(self, frame: Frame) -> str:
        """The last resource commits its work with the decision; its log says what stands."""
        try:
            decision_log.record(frame.sa_conn, self.gtrid, decision_log.COMMIT)
        except sa.exc.IntegrityError:
            return decision_log.ABORT          # recovery decided first
        try:
            frame.sa_tx.commit()
            return decision_log.COMMIT
        except sa.exc.DBAPIError as exc:
            lost = exc
        # the COMMIT's outcome is unknown: end the session, so that an unfinished
        # transaction cannot commit later, then ask the last resource itself
        frame.sa_conn.invalidate()
        standing = decision_log.decide(self.log_connection, self.gtrid, decision_log.ABORT)
        if standing == decision_log.COMMIT:
            log.info("the commit of %s on %r was not acknowledged but had landed",
                     self.gtrid, self.log_connection.name)
            return standing
        raise lost                             # it did not land: every participant rolls back

    def _abandon_all(self) -> None:
        for branch in self.branches:
            branch.abandon()
        last_frame, self._last_frame = self._last_frame, None
        if last_frame is not None:
            last_frame.sa_conn.invalidate()
            last_frame.sa_conn.close()

    def _rollback_all(self) -> None:
        errors = []
        for branch in self.branches:
            try:
                branch.rollback()
            except sa.exc.SQLAlchemyError as exc:   # recover() rolls back what is left
                errors.append(exc)
        last_frame, self._last_frame = self._last_frame, None
        if last_frame is not None:
            try:
                last_frame.sa_tx.rollback()
            finally:
                last_frame.sa_conn.close()
                ended(last_frame, committed=False)
        for error in errors:
            log.warning("rollback of a two-phase branch failed (recover() will finish it): %s",
                        error)
