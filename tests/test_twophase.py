"""Two-phase transactions by hand and coordinated, on PostgreSQL and MariaDB."""

from __future__ import annotations

import logging
import threading

import pytest
import sqlalchemy as sa

from rhosocial_ar import (
    ARError,
    ConfigurationError,
    ConnectionManager,
    Transaction,
    TwoPhaseAborted,
    TwoPhaseNotSupported,
    decision_log,
    get_connection,
    recover,
    two_phase,
)
from rhosocial_ar.dialects import is_retryable
from tests.conftest import make_tables
from tests.models import Account, User
from tests.test_records import count_statements
from tests.test_twophase_crash import in_doubt


def secondary_user():
    class OtherUser(User):
        __connection__ = "secondary"
        __table_name__ = "users"

    return OtherUser


@pytest.mark.backends("postgresql", "mysql")
def test_manual_prepare_and_commit(db):
    make_tables(User)
    seen = count_statements()
    tx = Transaction(get_connection(), two_phase=True)
    with tx:
        User.create(username="a", email="a")
    with tx:                                         # a second block joins the same work
        User.create(username="b", email="b")
    assert User.count() == 0                         # nothing visible yet
    tx.prepare()
    assert tx.state == "prepared"
    assert any("PREPARE" in s.upper() for s in seen)
    tx.commit()
    assert tx.state == "committed"
    assert sorted(User.pluck("username")) == ["a", "b"]
    with pytest.raises(ARError):
        tx.prepare()
    tx.rollback()                                    # once ended, a no-op


@pytest.mark.backends("postgresql", "mysql")
def test_manual_rollback_of_a_prepared_transaction(db):
    make_tables(User)
    tx = Transaction(get_connection(), two_phase=True)
    record = User(username="gone", email="g")
    with tx:
        record.save()
    tx.prepare()
    tx.rollback()
    assert User.count() == 0 and tx.state == "rolled back"
    assert record.is_new_record                      # the record does not claim the row
    assert in_doubt(["default"]) == []


@pytest.mark.backends("postgresql", "mysql")
def test_an_error_in_the_block_rolls_back(db):
    make_tables(User)
    tx = Transaction(get_connection(), two_phase=True)
    with pytest.raises(KeyError):
        with tx:
            User.create(username="x", email="x")
            raise KeyError
    assert tx.state == "rolled back" and User.count() == 0
    with pytest.raises(ARError):
        with tx:
            pass


@pytest.mark.backends("postgresql", "mysql")
def test_coordinated_commit_and_rollback(db):
    other = secondary_user()
    make_tables(User, other)
    with two_phase("default", "secondary"):
        User.create(username="left", email="l")
        other.create(username="right", email="r")
        assert User.count() == 1                     # reads inside see the work
    assert User.pluck("username") == ["left"] and other.pluck("username") == ["right"]
    with pytest.raises(ZeroDivisionError):
        with two_phase("default", "secondary"):
            User.create(username="l2", email="l2")
            other.create(username="r2", email="r2")
            1 / 0
    assert User.count() == 1 and other.count() == 1
    assert in_doubt(["default", "secondary"]) == []
    assert recover().committed == []


@pytest.mark.backends("postgresql", "mysql")
def test_a_failing_prepare_rolls_everything_back(db):
    other = secondary_user()
    make_tables(User, other)
    other.create(username="taken", email="t")
    with pytest.raises(sa.exc.IntegrityError):
        with two_phase("default", "secondary"):
            User.create(username="fine", email="f")
            other.create(username="taken", email="dup")     # unique violation
    assert User.count() == 0 and other.count() == 1


@pytest.mark.backends("postgresql", "mysql")
def test_recovery_decided_abort_first_wins(db, monkeypatch):
    """A recovery running beside a live coordinator: its ABORT beats the late COMMIT."""
    other = secondary_user()
    make_tables(User, other)
    from rhosocial_ar import twophase

    def recovery_strikes(step):
        if step == "after_prepares":
            report = recover()
            assert report.rolled_back or report.skipped

    monkeypatch.setattr(twophase, "crash_point", recovery_strikes)
    with pytest.raises(TwoPhaseAborted, match="decided abort"):
        with two_phase("default", "secondary"):
            User.create(username="l", email="l")
            other.create(username="r", email="r")
    monkeypatch.setattr(twophase, "crash_point", lambda step: None)
    assert recover().skipped == []
    assert User.count() == 0 and other.count() == 0
    assert in_doubt(["default", "secondary"]) == []


@pytest.mark.backends("sqlite", "postgresql")
def test_last_resource_commit_with_sqlite(db, tmp_path):
    ConnectionManager.configure("lite", {"url": f"sqlite:///{tmp_path / 'lite.db'}"})

    class LiteUser(User):
        __connection__ = "lite"
        __table_name__ = "users"

    if db.name == "sqlite":
        ConnectionManager.configure("lite2", {"url": f"sqlite:///{tmp_path / 'lite2.db'}"})
        with pytest.raises(TwoPhaseNotSupported, match="at most one participant"):
            two_phase("lite", "lite2")
        with pytest.raises(TwoPhaseNotSupported, match="SQLite"):
            Transaction(get_connection("lite"), two_phase=True)
        return
    make_tables(User, LiteUser)
    with two_phase("lite", "default"):
        LiteUser.create(username="lite", email="l")
        User.create(username="pg", email="p")
    assert LiteUser.count() == 1 and User.count() == 1
    # the decision row was written in the SQLite transaction, then cleaned up
    with get_connection("lite").engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(
            decision_log.log_table)).scalar() == 0
    with pytest.raises(RuntimeError):
        with two_phase("lite", "default"):
            LiteUser.create(username="lite2", email="l")
            User.create(username="pg2", email="p")
            raise RuntimeError
    assert LiteUser.count() == 1 and User.count() == 1


@pytest.mark.backends("postgresql")
def test_an_after_commit_hook_error_rolls_nothing_back(db, tmp_path):
    """Once decided, every participant commits; a hook's error is raised after that."""
    ConnectionManager.configure("lite", {"url": f"sqlite:///{tmp_path / 'lite.db'}"})

    class LiteUser(User):
        __connection__ = "lite"
        __table_name__ = "users"

        def after_commit(self):
            raise KeyError("last resource's hook")

    class FailingHook(User):
        def after_commit(self):
            raise RuntimeError("branch's hook")

    other = secondary_user()
    make_tables(User, LiteUser, other)
    with pytest.raises(KeyError):                    # the last resource commits first
        with two_phase("lite", "default", "secondary"):
            LiteUser.create(username="lite", email="l")
            FailingHook.create(username="pg", email="p")
            other.create(username="pg2", email="p")
    assert (LiteUser.count(), User.count(), other.count()) == (1, 1, 1)
    with pytest.raises(RuntimeError):
        with two_phase("default", "secondary"):
            FailingHook.create(username="pg3", email="p")
            other.create(username="pg4", email="p")
    assert (User.count(), other.count()) == (2, 2)
    assert in_doubt(["default", "secondary"]) == []
    assert recover().committed == []


def test_bad_participants(db):
    with pytest.raises(ConfigurationError):
        two_phase("default")
    with pytest.raises(ConfigurationError):
        two_phase("default", "default")
    ConnectionManager.configure("ro", {**db.config(1), "read_only": True})
    with pytest.raises(ConfigurationError, match="read-only"):
        two_phase("default", "ro")


@pytest.mark.backends("postgresql")
def test_optimistic_lock_failure_inside_two_phase(db):
    other = secondary_user()
    make_tables(Account, other)
    acct = Account.create(owner="a", amount=1)
    stale = Account.find(acct.id)
    acct.amount = 2
    acct.save()
    from rhosocial_ar import StaleObjectError
    with pytest.raises(StaleObjectError):
        with two_phase("default", "secondary"):
            other.create(username="x", email="x")
            stale.amount = 3
            stale.save()
    assert other.count() == 0 and Account.find(acct.id).amount == 2


def test_postgresql_without_prepared_transactions_is_refused_before_any_work():
    from tests.conftest import require_backend
    from tests.servers import scratch_postgresql

    require_backend("postgresql")
    ConnectionManager.reset()
    with scratch_postgresql(max_prepared_transactions="0") as url:
        ConnectionManager.configure({"plain": {"url": url},
                                     "lite": {"url": "sqlite:///:memory:"}})
        seen = count_statements("plain")
        with pytest.raises(TwoPhaseNotSupported,
                           match=r"'plain'.*max_prepared_transactions = 0.*ALTER SYSTEM"):
            Transaction(get_connection("plain"), two_phase=True)
        with pytest.raises(TwoPhaseNotSupported, match="at most one participant"):
            two_phase("plain", "lite")
        assert [s for s in seen if "SHOW" not in s.upper()] == []     # nothing else was sent
        ConnectionManager.reset()


def test_support_is_checked_per_engine_not_per_id(db):
    """A dropped engine's verdict goes with it: a later engine may get the same id()."""
    import gc
    import weakref

    from rhosocial_ar import twophase
    from rhosocial_ar.connections import Connection

    gc.collect()
    known = len(twophase._support)
    engine = sa.create_engine("sqlite://")
    assert "SQLite" in (twophase.support_problem(Connection("lite_check", engine)) or "")
    assert len(twophase._support) == known + 1
    gone = weakref.ref(engine)
    del engine
    gc.collect()
    assert gone() is None and len(twophase._support) == known


@pytest.mark.backends("postgresql", "mysql")
@pytest.mark.parametrize("coordinated", [False, True], ids=["manual", "coordinated"])
def test_a_deadlocked_branch_raises_the_deadlock_and_logs_nothing(db, caplog, coordinated):
    """MariaDB refuses XA END once a deadlock rolled a branch back; the caller still
    gets the deadlock (which transfer() retries), and no log claims work is left."""
    other = type("OtherAccount", (Account,), {"__connection__": "secondary",
                                              "__table_name__": "accounts"})
    make_tables(Account, other)
    first, second = Account.create(owner="a"), Account.create(owner="b")
    barrier = threading.Barrier(2, timeout=30)
    raised: list[BaseException] = []

    def move(one: int, two: int) -> None:
        try:
            if coordinated:
                with two_phase("default", "secondary"):
                    Account.where(id=one).update(amount=5)
                    other.where(id=one).count()
                    barrier.wait()
                    Account.where(id=two).update(amount=6)
            else:
                tx = Transaction(get_connection(), two_phase=True)
                with tx:
                    Account.where(id=one).update(amount=5)
                    barrier.wait()
                    Account.where(id=two).update(amount=6)
                tx.commit()
        except BaseException as exc:  # noqa: BLE001 - the test looks at what came out
            raised.append(exc)

    caplog.set_level(logging.WARNING)
    threads = [threading.Thread(target=move, args=pair)
               for pair in ((first.id, second.id), (second.id, first.id))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(raised) == 1, raised                      # one victim, one winner
    assert isinstance(raised[0], sa.exc.DBAPIError) and is_retryable(raised[0]), raised[0]
    assert [r.getMessage() for r in caplog.records] == []
    assert sorted(Account.pluck("amount")) == [5, 6]     # the winner's work, all of it
    assert in_doubt(["default", "secondary"]) == []
    for _ in range(3):                                   # the pool's connections all work
        with Transaction(get_connection(), two_phase=True) as tx:
            Account.where(id=first.id).update(amount=7)
        tx.commit()
