"""Read replicas against a real PostgreSQL streaming standby with an apply delay."""

from __future__ import annotations

import threading
import time
import warnings

import pytest
import sqlalchemy as sa

from rhosocial_ar import (
    ActiveRecord,
    ConnectionManager,
    IntegerPKMixin,
    ReplicaUnavailableWarning,
    routing,
)
from tests.conftest import SERVER_URLS, require_standby
from tests.standby import running_standby
from tests.test_records import count_statements

DELAY_MS = 1000     # margin for the timing assertions on a slow machine
DATABASE = sa.make_url(SERVER_URLS["postgresql"][0]).database


class Reading(IntegerPKMixin, ActiveRecord):
    __table_name__ = "replica_readings"
    __connection__ = "default"
    __read_connection__ = "replica"
    __read_your_writes__ = 0.3
    id: int | None = None
    value: str


@pytest.fixture(scope="module")
def standby():
    require_standby()
    with running_standby(delay_ms=DELAY_MS) as running:
        yield running


@pytest.fixture
def replica(standby):
    ConnectionManager.reset()
    ConnectionManager.configure({
        "default": {"url": SERVER_URLS["postgresql"][0]},
        "replica": {"url": standby.url(DATABASE), "read_only": True,
                    "connect_args": {"connect_timeout": 2}},
    })
    Reading.drop_table()
    Reading.create_table()
    standby.catch_up()                 # the table exists on the standby too
    routing._replica_down_until.clear()
    yield standby
    ConnectionManager.reset()
    routing._replica_down_until.clear()


def reads_on(name):
    seen = count_statements(name)
    return lambda: [s for s in seen if s.lstrip().upper().startswith("SELECT")]


def test_the_lag_is_real(replica):
    Reading.create(value="fresh")
    assert Reading.using("replica").find_by(value="fresh") is None      # not there yet
    waited = replica.catch_up()
    assert waited > 0.05
    assert Reading.using("replica").find_by(value="fresh") is not None


def test_read_your_writes_goes_to_the_primary(replica):
    on_replica = reads_on("replica")
    written = Reading.create(value="mine")
    found = Reading.find_by(value="mine")             # right after the write
    assert found is not None and found.id == written.id
    assert on_replica() == []


def test_other_contexts_and_later_reads_use_the_replica(replica):
    on_replica = reads_on("replica")
    Reading.create(value="lagging")
    seen_elsewhere = []
    thread = threading.Thread(target=lambda: seen_elsewhere.append(
        Reading.find_by(value="lagging")))
    thread.start()
    thread.join()
    assert seen_elsewhere == [None]                    # another thread: the lagging replica
    time.sleep(Reading.__read_your_writes__ + 0.05)    # our window is over...
    before = len(on_replica())
    assert Reading.find_by(value="lagging") is None   # ...so the replica, still behind
    assert len(on_replica()) == before + 1
    replica.catch_up()
    assert Reading.find_by(value="lagging") is not None
    assert len(on_replica()) == before + 2


def test_reads_in_a_transaction_use_the_primary(replica):
    on_replica = reads_on("replica")
    time.sleep(Reading.__read_your_writes__)
    with Reading.transaction():
        Reading.create(value="in-tx")
        assert Reading.where(value="in-tx").count() == 1
    assert on_replica() == []


def test_records_read_from_the_replica_save_to_the_primary(replica):
    Reading.create(value="old")
    replica.catch_up()
    time.sleep(Reading.__read_your_writes__)
    record = Reading.find_by(value="old")             # from the replica
    record.value = "new"
    record.save()                                     # the replica is read-only: primary
    assert Reading.using("default").find(record.id).value == "new"


def test_stopped_standby_falls_back_to_the_primary(replica):
    Reading.create(value="kept")
    replica.catch_up()
    time.sleep(Reading.__read_your_writes__)
    replica.pause()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            started = time.monotonic()
            assert Reading.find_by(value="kept") is not None       # answered by the primary
            assert Reading.count() == 1                             # skips the replica now
            elapsed = time.monotonic() - started
        assert [w.category for w in caught] == [ReplicaUnavailableWarning]
        assert "'replica' is unreachable" in str(caught[0].message)
        assert elapsed < 3
    finally:
        replica.resume()
    routing._replica_down_until.clear()
    replica.catch_up()
    assert Reading.using("replica").count() == 1                    # back in use


def test_after_the_retry_window_one_reader_probes_the_replica(replica, caplog, monkeypatch):
    """Readers arriving together when the window ends: one tries the replica, the
    others stay on the primary instead of each waiting on a replica that may hang."""
    monkeypatch.setattr(routing, "REPLICA_RETRY_SECONDS", 0.5)
    Reading.create(value="kept")
    replica.catch_up()
    time.sleep(Reading.__read_your_writes__)
    readers = 6
    start = threading.Barrier(readers, timeout=30)
    answers: list[int] = []

    def read_together() -> None:
        start.wait()
        answers.append(Reading.count())

    def burst() -> None:
        threads = [threading.Thread(target=read_together) for _ in range(readers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

    def unreachable() -> int:
        return sum("is unreachable" in r.getMessage() for r in caplog.records)

    caplog.set_level("WARNING", logger="rhosocial_ar")
    replica.pause()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReplicaUnavailableWarning)
            assert Reading.count() == 1                      # fails over, marks it down
            assert unreachable() == 1
            time.sleep(0.6)                                  # the window is over
            burst()
            assert unreachable() == 2                        # one probe, not six
    finally:
        replica.resume()
    assert answers == [1] * readers
    replica.catch_up()
    time.sleep(0.6)
    on_replica = reads_on("replica")
    burst()                                                  # one probe, which succeeds
    assert Reading.count() == 1
    assert len(on_replica()) >= 2 and unreachable() == 2     # ... and the replica is back
