"""tests/standby.py runs a real streaming replica of the PostgreSQL test server.

Commits reach it after its apply delay, not before; it refuses writes; it can be
paused (down), frozen (hung) and resumed; stop() kills it and removes it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psycopg2
import pytest
import sqlalchemy as sa

from tests.conftest import IN_CI, SERVER_URLS, require_backend
from tests.standby import Standby, running_standby, standby_problem, start_standby

DELAY_MS = 1000  # long enough that "right after the commit" is surely before it
PRIMARY_URL = SERVER_URLS["postgresql"][0]
DATABASE = sa.make_url(PRIMARY_URL).database or "rhosocial_ar_test"
TABLE = "standby_probe"


def _require_standby() -> None:
    require_backend("postgresql")
    problem = standby_problem(PRIMARY_URL)
    if problem is not None:
        message = f"NO STANDBY CAN RUN HERE, standby tests did not run: {problem}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def primary() -> Iterator[sa.Engine]:
    _require_standby()
    engine = sa.create_engine(PRIMARY_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")
        conn.exec_driver_sql(f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, note text)")
    try:
        yield engine
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")
        engine.dispose()


@pytest.fixture(scope="module")
def standby(primary: sa.Engine) -> Iterator[Standby]:
    with running_standby(DELAY_MS, primary=PRIMARY_URL) as standby:
        assert standby.timings["start"] < 30
        standby.catch_up()  # the table, created before the clone, is there; nothing is pending
        yield standby


@pytest.fixture
def replica(standby: Standby) -> Iterator[sa.Engine]:
    # autocommit: an open transaction on a standby holds locks that hold up replay
    engine = sa.create_engine(standby.url(DATABASE), isolation_level="AUTOCOMMIT",
                              connect_args={"connect_timeout": 2})
    yield engine
    engine.dispose()


def _insert(primary: sa.Engine, row_id: int) -> float:
    """Commit a row on the primary; returns the time the commit returned."""
    with primary.connect() as conn:
        conn.execute(sa.text(f"INSERT INTO {TABLE} (id, note) VALUES (:id, 'x')"), {"id": row_id})
    return time.monotonic()


def _has_row(conn: sa.Connection, row_id: int) -> bool:
    return conn.execute(sa.text(f"SELECT 1 FROM {TABLE} WHERE id = :id"), {"id": row_id}).first() is not None


def _connect_raw(port: int, timeout: int = 2) -> None:
    url = sa.make_url(PRIMARY_URL)
    conn = psycopg2.connect(host="127.0.0.1", port=port, user=url.username, password=url.password,
                            dbname=DATABASE, connect_timeout=timeout)
    conn.close()


def test_the_standby_is_a_separate_server_in_recovery(standby: Standby, replica: sa.Engine) -> None:
    same_user = sa.make_url(PRIMARY_URL).set(host="127.0.0.1", port=standby.port, database=DATABASE)
    assert standby.url(DATABASE) == same_user.render_as_string(hide_password=False)
    if "RHOSOCIAL_AR_PG_URL" not in os.environ:
        assert standby.url(DATABASE) == f"postgresql+psycopg2://root@127.0.0.1:{standby.port}/{DATABASE}"
    assert standby.port != sa.make_url(PRIMARY_URL).port
    assert int((standby.data_dir / "postmaster.pid").read_text().split()[0]) == standby.pid
    with replica.connect() as conn:
        assert conn.exec_driver_sql("SELECT pg_is_in_recovery()").scalar() is True
        delay = "SELECT setting FROM pg_settings WHERE name = 'recovery_min_apply_delay'"
        assert conn.exec_driver_sql(delay).scalar() == str(DELAY_MS)
        assert conn.exec_driver_sql("SELECT status FROM pg_stat_wal_receiver").scalar() == "streaming"
        assert conn.exec_driver_sql("SHOW port").scalar() == str(standby.port)


def test_a_commit_shows_up_after_the_delay_not_before(primary: sa.Engine, replica: sa.Engine) -> None:
    with replica.connect() as conn:
        assert not _has_row(conn, 1)
        committed = _insert(primary, 1)
        assert not _has_row(conn, 1), "the standby applied the commit without waiting for the delay"
        checked = time.monotonic() - committed
        assert checked < DELAY_MS / 1000 / 2, f"checked {checked:.3f} s after the commit, too late to tell"
        while not _has_row(conn, 1):
            assert time.monotonic() - committed < DELAY_MS / 1000 + 3, "the row did not reach the standby"
            time.sleep(0.005)
        lag = time.monotonic() - committed
    # the delay counts from the commit timestamp on the primary, a moment before the commit returned
    assert DELAY_MS / 1000 * 0.9 <= lag <= DELAY_MS / 1000 + 1.0, f"visible after {lag:.3f} s"


def test_writes_on_the_standby_fail(replica: sa.Engine) -> None:
    with replica.connect() as conn:
        with pytest.raises(sa.exc.DBAPIError) as raised:
            conn.execute(sa.text(f"INSERT INTO {TABLE} (id, note) VALUES (100, 'x')"))
        assert getattr(raised.value.orig, "pgcode", None) == "25006"  # read_only_sql_transaction
        assert "read-only transaction" in str(raised.value.orig)
        with pytest.raises(sa.exc.DBAPIError) as raised:
            conn.exec_driver_sql("CREATE TABLE standby_write (id integer)")
        assert getattr(raised.value.orig, "pgcode", None) == "25006"


def test_a_paused_standby_refuses_connections_and_catches_up_on_resume(
    primary: sa.Engine, standby: Standby, replica: sa.Engine
) -> None:
    old_pid = standby.pid
    standby.pause()
    assert standby.pid is None and not standby.running
    started = time.monotonic()
    with pytest.raises(psycopg2.OperationalError, match="refused"):
        _connect_raw(standby.port)
    assert time.monotonic() - started < 1
    _insert(primary, 2)  # while it is down: the slot keeps the WAL for it

    standby.resume()
    assert standby.running and standby.pid != old_pid
    assert standby.timings["resume"] < 30
    standby.catch_up()
    replica.dispose()  # its pooled connections died with the server
    with replica.connect() as conn:
        assert _has_row(conn, 2)


def test_a_frozen_standby_hangs_connections_until_thawed(standby: Standby, replica: sa.Engine) -> None:
    standby.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(psycopg2.OperationalError, match="timeout"):
            _connect_raw(standby.port, timeout=2)
        assert time.monotonic() - started >= 1.5
    finally:
        standby.thaw()
    _connect_raw(standby.port)


def test_stop_kills_the_server_and_removes_it(primary: sa.Engine) -> None:
    standby = start_standby(0, primary=PRIMARY_URL)
    try:
        pid, port, directory, slot = standby.pid, standby.port, standby.directory, standby.slot_name
        assert pid is not None and directory.is_dir()
        _connect_raw(port)
    finally:
        standby.stop()

    started = time.monotonic()
    with pytest.raises(psycopg2.OperationalError):
        _connect_raw(port, timeout=2)
    assert time.monotonic() - started < 1, "connecting to a stopped standby should fail at once"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not directory.exists()
    with primary.connect() as conn:
        slots = conn.exec_driver_sql("SELECT slot_name FROM pg_replication_slots").scalars().all()
    assert slot not in slots
    standby.stop()  # again: nothing to do
