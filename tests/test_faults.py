"""Faults on the real servers: restarts, killed connections, a server that is not there, a replica
that stops. What was committed stays, what was open is rolled back, the errors are clear and the
next operation works.

Each test prints its figures (``tests.stress.report``). Restarts take the local PostgreSQL
cluster or MariaDB down for a few seconds (``tests.servers``); the helpers return once the server
answers again, so every test ends with both servers up.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from rhosocial_ar import (
    ActiveRecord,
    ConnectionManager,
    Field,
    IntegerPKMixin,
    ReplicaUnavailableWarning,
    get_connection,
    routing,
    two_phase,
)
from rhosocial_ar.dialects import in_doubt_xids
from tests.conftest import SERVER_URLS, require_backend, require_standby
from tests.servers import restart_mariadb, restart_postgresql
from tests.standby import Standby, running_standby
from tests.stress import Crew, report

OTHER = {"postgresql": "mysql", "mysql": "postgresql"}
RESTART = {"postgresql": restart_postgresql, "mysql": restart_mariadb}


class Durable(IntegerPKMixin, ActiveRecord):
    """One table, reached through several connections to the same database."""

    __table_name__ = "fault_rows"
    __connection__ = "load"
    id: int | None = None
    token: str = Field(max_length=40, unique=True)
    phase: str = Field(max_length=10)


@pytest.fixture
def clean() -> Iterator[None]:
    ConnectionManager.reset()
    try:
        yield
    finally:
        ConnectionManager.reset()


class LogTap(logging.Handler):
    """Records the rhosocial_ar logger's messages (also from other threads)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.messages.append(record.getMessage())
            self._changed.notify_all()

    def count(self, part: str) -> int:
        with self._changed:
            return sum(part in m for m in self.messages)

    def wait_for(self, part: str, times: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: sum(part in m for m in self.messages) >= times,
                                          timeout)

    def __enter__(self) -> LogTap:
        logger = logging.getLogger("rhosocial_ar")
        self._level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("rhosocial_ar")
        logger.removeHandler(self)
        logger.setLevel(self._level)


def _error_text(exc: BaseException) -> str:
    return "\n".join([str(exc), *getattr(exc, "__notes__", [])])


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {str(orig).strip().splitlines()[0][:60]}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- a server that is not there ----------------------------------------------------------

@pytest.mark.parametrize("backend_name", ["postgresql", "mysql"])
def test_unreachable_server_fails_fast_naming_the_connection(backend_name, clean, caplog):
    require_backend(backend_name)
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-Pa55word"
    port = _free_port()                          # nothing listens there: refused at once
    url = sa.make_url(SERVER_URLS[backend_name][0]).set(password=secret, port=port)
    started = time.monotonic()
    ConnectionManager.configure("orders", {"url": url.render_as_string(hide_password=False)})
    configured = time.monotonic() - started
    assert configured < 0.5
    failures = {}
    with Durable.using_connection("orders"):
        for what, operation in [("read", lambda: Durable.count()),
                                ("write", lambda: Durable.create(token="t", phase="x")),
                                ("transaction", lambda: Durable.transaction().__enter__())]:
            started = time.monotonic()
            with pytest.raises(sa.exc.OperationalError) as failed:
                operation()
            failures[what] = time.monotonic() - started
            text = _error_text(failed.value)
            assert "connection 'orders'" in text, text
            assert f"127.0.0.1:{port}" in text, text
            assert [n for n in failed.value.__notes__ if "rhosocial_ar" in n] == [
                f"rhosocial_ar connection 'orders' at {url.render_as_string(hide_password=True)}"]
            assert secret not in text and secret not in repr(failed.value)
            assert failures[what] < 2, f"{what} took {failures[what]:.2f} s against a refused port"
    assert secret not in caplog.text
    assert get_connection("orders").engine.pool.checkedout() == 0
    report(backend=backend_name, configure_s=configured,
           first_failures_s={k: round(v, 3) for k, v in failures.items()},
           operations=len(failures), error=str(failed.value).splitlines()[0][:90])


@pytest.mark.parametrize("backend_name", ["postgresql", "mysql"])
def test_a_server_that_never_answers_fails_after_the_connect_timeout(backend_name, clean):
    """A port that accepts TCP but never speaks (a hung or frozen server): bounded by connect_timeout."""
    require_backend(backend_name)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)                        # the kernel accepts; nobody ever answers
    port = listener.getsockname()[1]
    url = sa.make_url(SERVER_URLS[backend_name][0]).set(port=port)
    ConnectionManager.configure("orders", {"url": url.render_as_string(hide_password=False),
                                           "connect_args": {"connect_timeout": 2}})

    def first_read(_: int) -> tuple[float, BaseException | None]:
        started = time.monotonic()
        try:
            with Durable.using_connection("orders"):
                Durable.count()
        except sa.exc.OperationalError as exc:
            return time.monotonic() - started, exc
        return time.monotonic() - started, None

    crew = Crew(3, first_read, "silent").start()
    try:
        crew.join(8)
    finally:
        listener.close()                        # frees a hung thread, if any
        crew.join(10)
    crew.raise_first()
    waits = [w for w, _ in crew.results.values()]
    errors = [e for _, e in crew.results.values()]
    assert all(isinstance(e, sa.exc.OperationalError) for e in errors)
    assert all("connection 'orders'" in _error_text(e) for e in errors)
    assert all(1.5 < w < 4 for w in waits), waits
    slow_query_s = None
    if backend_name == "mysql":
        # the limit holds for the handshake only: on the real server a query may take longer
        ConnectionManager.configure("orders", {"url": SERVER_URLS["mysql"][0],
                                               "connect_args": {"connect_timeout": 1}})
        with Durable.using_connection("orders"):
            Durable.drop_table()
            Durable.create_table()
            Durable.create(token="slow", phase="slow")
            started = time.monotonic()
            assert Durable.where("SLEEP(1.5) = 0").count() == 1
            slow_query_s = time.monotonic() - started
    report(backend=backend_name, threads=3, connect_timeout_s=2, waits_s=[round(w, 2) for w in waits],
           error=str(errors[0]).splitlines()[0][:90], query_longer_than_connect_timeout_s=slow_query_s)


# -- a connection killed from the server side ----------------------------------------------

APP_NAME = "rhosocial_ar_faults"


def _admin(url: str) -> sa.Engine:
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def _session_id(sa_conn: sa.Connection) -> int:
    sql = "SELECT pg_backend_pid()" if sa_conn.dialect.name == "postgresql" else "SELECT CONNECTION_ID()"
    return int(sa_conn.exec_driver_sql(sql).scalar_one())


def _kill(admin: sa.Engine, session: int) -> None:
    with admin.connect() as conn:
        if admin.dialect.name == "postgresql":
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p, 5000)"), {"p": session}).scalar()
        else:
            conn.exec_driver_sql(f"KILL {int(session)}")


def _sessions(admin: sa.Engine, database: str) -> dict[int, str]:
    """Our sessions on the server: id -> what it is doing."""
    with admin.connect() as conn:
        if admin.dialect.name == "postgresql":
            rows = conn.execute(sa.text(
                "SELECT pid, state || ': ' || query FROM pg_stat_activity "
                "WHERE application_name = :app"), {"app": APP_NAME})
        else:
            rows = conn.execute(sa.text(
                "SELECT id, concat(command, ': ', coalesce(info, '')) FROM "
                "information_schema.processlist WHERE db = :db AND id <> CONNECTION_ID()"),
                {"db": database})
        return {int(pid): str(doing) for pid, doing in rows}


@pytest.mark.parametrize("backend_name", ["postgresql", "mysql"])
def test_a_connection_killed_mid_transaction(backend_name, clean):
    require_backend(backend_name)
    url = SERVER_URLS[backend_name][0]
    database = str(sa.make_url(url).database)
    config: dict[str, Any] = {"url": url, "pool_size": 3}
    if backend_name == "postgresql":
        config["connect_args"] = {"application_name": APP_NAME}
    ConnectionManager.configure("load", config)
    admin = _admin(url)
    pool = get_connection("load").engine.pool
    Durable.drop_table()
    Durable.create_table()
    Durable.bulk_insert([{"token": f"kept-{i}", "phase": "kept"} for i in range(10)])
    kills = 0
    try:
        # 1. killed between two statements of a transaction
        with pytest.raises(sa.exc.DBAPIError) as failed:
            with Durable.transaction() as tx:
                for i in range(5):
                    Durable.create(token=f"doomed-{i}", phase="doomed")
                victim = _session_id(tx.sa_connection)
                _kill(admin, victim)
                kills += 1
                Durable.create(token="doomed-last", phase="doomed")
        between = failed.value
        assert isinstance(between, sa.exc.OperationalError), repr(between)
        assert between.connection_invalidated
        assert "INSERT INTO fault_rows" in str(between.statement)
        assert pool.checkedout() == 0
        assert victim not in _sessions(admin, database)
        assert Durable.where(phase="doomed").count() == 0           # the work was not applied
        with Durable.transaction() as tx:                            # the next one works
            Durable.create(token="after-1", phase="after")
            assert _session_id(tx.sa_connection) != victim

        # 2. killed while a statement runs: the statement fails at once, not after it ends
        sleeper = Durable.where(token="kept-0")
        sleeper = sleeper.where("(SELECT true FROM pg_sleep(5))" if backend_name == "postgresql"
                                else "SLEEP(5) = 0")
        running = threading.Event()

        def long_query(_: int) -> tuple[float, BaseException | None]:
            try:
                with Durable.transaction():
                    running.set()
                    Durable.create(token="doomed-sleeper", phase="doomed")
                    sleeper.count()
            except sa.exc.DBAPIError as exc:
                return time.monotonic(), exc
            return time.monotonic(), None

        crew = Crew(1, long_query, "sleeper").start()
        assert running.wait(10)
        deadline = time.monotonic() + 10
        victim = None
        while victim is None and time.monotonic() < deadline:
            victim = next((s for s, doing in _sessions(admin, database).items()
                           if "sleep" in doing.lower() and "processlist" not in doing.lower()), None)
        assert victim is not None, "the long query never showed up on the server"
        killed_at = time.monotonic()
        _kill(admin, victim)
        kills += 1
        crew.join(10)
        crew.raise_first()
        ended_at, during = crew.results[0]
        assert isinstance(during, sa.exc.OperationalError), repr(during)
        assert during.connection_invalidated
        fail_after_kill = ended_at - killed_at
        assert fail_after_kill < 2, f"the killed statement failed {fail_after_kill:.2f} s after the kill"
        assert Durable.where(phase="doomed").count() == 0
        assert pool.checkedout() == 0

        # 3. killed while idle in the pool: the next read is retried once on a fresh connection
        with LogTap() as tap:
            with Durable.transaction():
                Durable.create(token="after-2", phase="after")
            idle = [s for s, doing in _sessions(admin, database).items()
                    if doing.lower().startswith(("idle", "sleep"))]
            assert idle, "no pooled connection to kill"
            for session in idle:
                _kill(admin, session)
                kills += 1
            assert Durable.where(phase="kept").count() == 10             # read: retried, answered
            assert tap.count("retrying the read once") == 1
            Durable.create(token="after-3", phase="after")                # write: a fresh connection
        assert Durable.where(phase="after").count() == 3
        assert Durable.count() == 13
        assert pool.checkedout() == 0
        report(backend=backend_name, kills=kills, between_statements=type(between.orig).__name__,
               during_statement_failed_after_s=fail_after_kill,
               idle_killed=len(idle), rows_checked=Durable.count(),
               errors=[str(between.orig).splitlines()[0][:70], str(during.orig).splitlines()[0][:70]])
    finally:
        admin.dispose()


# -- a server restarted in the middle of a run ----------------------------------------------

def _restart_connections(backend_name: str) -> tuple[str, str]:
    url, peer = SERVER_URLS[backend_name][0], SERVER_URLS[OTHER[backend_name]][1]
    require_backend(backend_name)
    require_backend(OTHER[backend_name])
    small = {"url": url, "pool_size": 4, "max_overflow": 4, "pool_timeout": 10}
    ConnectionManager.configure({
        "load": small, "held": small, "stale_read": small, "stale_write": small,
        "pinged": {**small, "pool_pre_ping": True}, "peer": {"url": peer},
    })
    for name in ("load", "peer"):
        with Durable.using_connection(name):
            Durable.drop_table()
            Durable.create_table()
    return url, peer


@pytest.mark.parametrize("backend_name", ["postgresql", "mysql"])
def test_server_restart_in_the_middle_of_a_run(backend_name, clean):
    url, _ = _restart_connections(backend_name)
    Durable.bulk_insert([{"token": f"before-{i}", "phase": "before"} for i in range(200)])
    with Durable.using_connection("peer"):
        Durable.bulk_insert([{"token": f"peer-{i}", "phase": "before"} for i in range(50)])
    for name in ("stale_read", "stale_write", "pinged"):   # idle pooled connections to go stale
        engine = get_connection(name).engine
        first, second = engine.connect(), engine.connect()
        first.close()
        second.close()
        assert engine.pool.checkedin() == 2

    stop, back, restarted = threading.Event(), threading.Event(), threading.Event()
    holders_ready = threading.Barrier(3)
    outcomes: dict[int, list[tuple[bool, bool, str]]] = collections.defaultdict(list)
    committed: set[str] = set()
    failed_tokens: set[str] = set()
    created, after_back = threading.Semaphore(0), threading.Semaphore(0)

    def load(i: int) -> None:
        """Creates and reads on 'load' before, during and after the restart."""
        n = 0
        while not stop.is_set():
            n += 1
            token, was_back = f"load-{i}-{n}", back.is_set()
            with Durable.using_connection("load"):
                try:
                    Durable.create(token=token, phase="load")
                except sa.exc.DBAPIError as exc:
                    failed_tokens.add(token)
                    outcomes[i].append((was_back, False, _first_line(exc)))
                    stop.wait(0.05)                 # a client backs off a little
                    continue
                committed.add(token)
                outcomes[i].append((was_back, True, ""))
                try:
                    assert Durable.where(token=token).count() == 1
                except sa.exc.DBAPIError as exc:
                    outcomes[i].append((was_back, False, _first_line(exc)))
                    continue
                outcomes[i].append((was_back, True, ""))
            (after_back if was_back else created).release()

    def hold_local(_: int) -> BaseException | None:
        """A transaction open across the restart, on the restarted server only."""
        try:
            with Durable.using_connection("held"), Durable.transaction():
                for k in range(20):
                    Durable.create(token=f"held-{k}", phase="held")
                holders_ready.wait(10)
                assert restarted.wait(120)
                Durable.create(token="held-last", phase="held")
        except sa.exc.DBAPIError as exc:
            return exc
        return None

    def hold_two_phase(_: int) -> BaseException | None:
        """A two-phase transaction open across the restart, on both servers."""
        try:
            with Durable.using_connection("held"), two_phase("held", "peer"):
                for k in range(10):
                    Durable.create(token=f"held2pc-{k}", phase="held")
                    with Durable.using_connection("peer"):
                        Durable.create(token=f"held2pc-{k}", phase="held")
                holders_ready.wait(10)
                assert restarted.wait(120)
        except sa.exc.DBAPIError as exc:
            return exc
        return None

    loaders = Crew(4, load, "load").start()
    holders = Crew(2, lambda i: hold_local(i) if i == 0 else hold_two_phase(i), "held").start()
    try:
        holders_ready.wait(10)
        for _ in range(4 * 5):                   # the load is under way
            assert created.acquire(timeout=30), "the load did not start"
        started = time.monotonic()
        RESTART[backend_name](url)
        down_s = time.monotonic() - started
        back.set()
        restarted.set()
        holders.join(30)
        holders.raise_first()

        # the next operations after the restart
        with LogTap() as tap:
            assert Durable.using("stale_read").where(phase="before").count() == 200
            stale_read_retried = tap.count("retrying the read once")
        assert stale_read_retried == 1                     # its pooled connections were dead
        with Durable.using_connection("pinged"):
            Durable.create(token="pinged-1", phase="after")
        stale_write_failures = []
        with Durable.using_connection("stale_write"):
            for attempt in range(2):
                try:
                    Durable.create(token=f"stale-write-{attempt}", phase="after")
                    break
                except sa.exc.DBAPIError as exc:
                    stale_write_failures.append(exc)
        assert len(stale_write_failures) <= 1
        for exc in stale_write_failures:
            assert isinstance(exc, sa.exc.OperationalError) and exc.connection_invalidated, repr(exc)

        for _ in range(4 * 3):                   # the load went on after the restart
            assert after_back.acquire(timeout=30), "the load did not resume after the restart"
    finally:
        stop.set()
        back.set()
        restarted.set()
        loaders.join(60)
        holders.join(60)
    loaders.raise_first()

    # nothing committed is lost; nothing open is half-applied
    local_error, two_phase_error = holders.results[0], holders.results[1]
    assert isinstance(local_error, sa.exc.OperationalError), repr(local_error)
    assert isinstance(two_phase_error, sa.exc.DBAPIError), repr(two_phase_error)
    present = set(Durable.using("load").pluck("token"))
    assert {f"before-{i}" for i in range(200)} <= present
    assert committed <= present, f"lost: {sorted(committed - present)[:5]}"
    ambiguous = present & failed_tokens
    assert present <= committed | failed_tokens | {
        f"before-{i}" for i in range(200)} | {"pinged-1", "stale-write-0", "stale-write-1"}
    assert not {t for t in present if t.startswith("held")}
    with Durable.using_connection("peer"):
        assert Durable.where(phase="before").count() == 50
        assert Durable.where(phase="held").count() == 0
    for name in ("held", "peer"):
        with get_connection(name).engine.connect() as conn:
            assert in_doubt_xids(conn, "rar_") == []
    for name in ("load", "held", "stale_read", "stale_write", "pinged", "peer"):
        assert get_connection(name).engine.pool.checkedout() == 0, name

    per_thread_after = [sum(1 for was_back, ok, _ in rows if was_back and not ok)
                        for rows in outcomes.values()]
    assert max(per_thread_after) <= 1, per_thread_after         # at most one failure once back
    assert all(any(was_back and ok for was_back, ok, _ in rows) for rows in outcomes.values())
    errors = collections.Counter(kind for rows in outcomes.values() for _, ok, kind in rows if not ok)
    report(backend=backend_name, restarts=1, restart_s=down_s, load_threads=4,
           operations=sum(len(rows) for rows in outcomes.values()), committed=len(committed),
           failed_during_restart=sum(errors.values()), failures=dict(errors.most_common(4)),
           open_transactions_failed_with=[_first_line(local_error), _first_line(two_phase_error)],
           failures_after_back_per_thread=per_thread_after,
           failed_but_committed=len(ambiguous),
           open_transactions_rolled_back=2, stale_read_retried=stale_read_retried,
           stale_write_failures=[_first_line(e) for e in stale_write_failures], pre_ping_failures=0,
           rows_checked=len(present) + 50)


# -- a replica that stops in the middle of a run ---------------------------------------------

READERS = 6
ROWS = 50
DATABASE = str(sa.make_url(SERVER_URLS["postgresql"][0]).database)


class Mirrored(IntegerPKMixin, ActiveRecord):
    __table_name__ = "fault_mirrored"
    __connection__ = "default"
    __read_connection__ = "replica"
    __read_your_writes__ = 0.0
    id: int | None = None
    value: str = Field(max_length=20)


class CheckoutTap:
    """Counts an engine's pool checkouts (one per read); wait_for() returns once there are enough.

    A pool event, not a statement one: statement listeners would switch the library
    to its observed (slower) execution path.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        self._changed = threading.Condition()
        sa.event.listen(engine, "checkout", self._seen)

    def _seen(self, *args: Any) -> None:
        with self._changed:
            self.count += 1
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.count >= count, timeout)


@pytest.fixture
def standby() -> Iterator[Standby]:
    require_standby()
    ConnectionManager.reset()
    with running_standby(delay_ms=0) as running:
        ConnectionManager.configure({
            "default": {"url": SERVER_URLS["postgresql"][0], "pool_size": 8},
            "replica": {"url": running.url(DATABASE), "read_only": True, "pool_size": 8,
                        "connect_args": {"connect_timeout": 2}},
        })
        Mirrored.drop_table()
        Mirrored.create_table()
        Mirrored.bulk_insert([{"value": f"v{i}"} for i in range(ROWS)])
        running.catch_up()
        routing._replica_down_until.clear()
        retry_seconds = routing.REPLICA_RETRY_SECONDS
        routing.REPLICA_RETRY_SECONDS = 1.0           # try the replica again soon, in the test
        try:
            yield running
        finally:
            routing.REPLICA_RETRY_SECONDS = retry_seconds
            routing._replica_down_until.clear()
            ConnectionManager.reset()
            if running.running and getattr(running, "_frozen", False):
                running.thaw()


class Readers:
    """Threads reading Mirrored without pause; every answer is checked, every latency kept."""

    def __init__(self, count: int) -> None:
        self.stop = threading.Event()
        self.latencies: list[tuple[float, float]] = []       # (started, seconds)
        self._lock = threading.Lock()
        self.crew = Crew(count, self._read, "reader")

    def _read(self, i: int) -> int:
        n = 0
        while not self.stop.is_set():
            n += 1
            started = time.monotonic()
            if n % 2:
                assert Mirrored.count() == ROWS
            else:
                found = Mirrored.find_by(value=f"v{(i * 7 + n) % ROWS}")
                assert found is not None
            with self._lock:
                self.latencies.append((started, time.monotonic() - started))
        return n

    def __enter__(self) -> Readers:
        self._warnings = warnings.catch_warnings(record=True)
        self.warned = self._warnings.__enter__()
        warnings.simplefilter("always", ReplicaUnavailableWarning)
        self.crew.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        try:
            self.crew.join(60)
        finally:
            self._warnings.__exit__(None, None, None)

    def slowest(self, since: float = 0.0) -> float:
        return max((s for t, s in self.latencies if t >= since), default=0.0)


def _replica_report(standby: Standby, readers: Readers, primary: CheckoutTap, replica: CheckoutTap,
                    fault: str, **extra: Any) -> None:
    readers.crew.raise_first()
    reads = sum(readers.crew.results.values())
    assert reads == len(readers.latencies)
    report(fault=fault, readers=READERS, reads=reads, failed_reads=len(readers.crew.errors),
           on_replica=replica.count, on_primary=primary.count,
           replica_warnings=sum(w.category is ReplicaUnavailableWarning for w in readers.warned),
           slowest_read_s=readers.slowest(), rows_checked=reads, **extra)


def test_replica_shut_down_under_load_reads_fall_back(standby):
    primary = CheckoutTap(get_connection("default").engine)
    replica = CheckoutTap(get_connection("replica").engine)
    with LogTap() as tap, Readers(READERS) as readers:
        assert replica.wait_for(100, 20)                  # the replica serves the reads
        stopped_at = time.monotonic()
        standby.pause()                                   # refused from now on
        paused_s = time.monotonic() - stopped_at
        on_primary_at_pause = primary.count
        assert primary.wait_for(on_primary_at_pause + 100, 20)
        first_failures = tap.count("is unreachable")
        assert tap.wait_for("is unreachable", first_failures + 1, 20)   # tried after 1 s: still down
        standby.resume()
        standby.catch_up()
        back_at = replica.count
        assert replica.wait_for(back_at + 50, 20)         # and back on the replica once it is up
    _replica_report(standby, readers, primary, replica, "pause (shutdown) and resume",
                    pause_s=paused_s, unreachable_logged=tap.count("is unreachable"))
    assert not readers.crew.errors


def test_replica_hanging_for_new_connections_reads_fall_back(standby):
    """A frozen replica (SIGSTOP) with no idle pooled connection: new ones time out after 2 s."""
    primary = CheckoutTap(get_connection("default").engine)
    replica = CheckoutTap(get_connection("replica").engine)
    get_connection("replica").engine.dispose()        # no pooled connection to the replica
    standby.freeze()
    frozen_at = time.monotonic()
    try:
        with LogTap() as tap, Readers(READERS) as readers:
            assert primary.wait_for(200, 30)
            first_failures = tap.count("is unreachable")   # each reader's first read
            assert tap.wait_for("is unreachable", first_failures + 1, 20)   # retried after 1 s
        frozen_s = time.monotonic() - frozen_at
    finally:
        standby.thaw()
    _replica_report(standby, readers, primary, replica, "freeze (connect hangs), cold pool",
                    frozen_s=frozen_s, connect_timeout_s=2, unreachable_logged=tap.count("is unreachable"))
    assert not readers.crew.errors
    assert readers.slowest() < 2 + 1.5
    standby.catch_up()
    assert Mirrored.using("replica").count() == ROWS


@pytest.mark.xfail(strict=True, reason=(
    "library limitation: reads on connections already pooled to a replica that hangs (SIGSTOP, "
    "a hung host) wait until it answers again; connect_timeout bounds only new connections, and "
    "nothing bounds a query on an open one, so those reads never fall back"))
def test_replica_hanging_with_pooled_connections_reads_fall_back(standby):
    primary = CheckoutTap(get_connection("default").engine)
    replica = CheckoutTap(get_connection("replica").engine)
    with LogTap() as tap, Readers(READERS) as readers:
        assert replica.wait_for(100, 20)
        standby.freeze()
        frozen_at = time.monotonic()
        try:
            primary.wait_for(primary.count + 100, 5)
        finally:
            standby.thaw()
        frozen_s = time.monotonic() - frozen_at
    _replica_report(standby, readers, primary, replica, "freeze (hang), warm pool",
                    frozen_s=frozen_s, unreachable_logged=tap.count("is unreachable"))
    assert not readers.crew.errors
    assert readers.slowest(frozen_at - 1) < 2 + 1.5, (
        f"a read waited {readers.slowest(frozen_at - 1):.1f} s on the frozen replica")
