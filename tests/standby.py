"""A real PostgreSQL streaming read replica of the test server, for tests.

``start_standby()`` clones the primary (``RHOSOCIAL_AR_PG_URL``, by default
127.0.0.1:5432) with ``pg_basebackup -R`` into a fresh temporary directory,
starts a hot standby from it on a free port of 127.0.0.1 and returns once the
standby accepts connections, is in recovery and streams WAL from the primary::

    with running_standby(delay_ms=500) as standby:
        engine = sa.create_engine(standby.url("rhosocial_ar_test"))
        ...                       # commits on the primary show up ~500 ms later
        standby.pause()           # down: connections are refused
        standby.resume()          # up again, catches up from its slot
    # stopped, its directory removed and its replication slot dropped

Run as root (or as the ``postgres`` OS user): pg_basebackup and the server
run as ``postgres``, which owns the directory (mode 700: ``data/``, the log
``standby.log``, the unix socket, ``standby.json``). The server is
``postgres -D data`` itself, a child of this process in its own session, so
``Standby.pid`` is the postmaster and is signalled directly (no pg_ctl). The
standby has the primary's roles, so ``root`` connects to it as to the primary. The primary needs a
``host replication all 127.0.0.1/32 trust`` line in pg_hba.conf, which
``prepare_primary()`` adds with a reload (``start_standby()`` calls it too):

    python3 -m tests.standby prepare      # what .ci/run calls
    python3 -m tests.standby start [--delay-ms N]   # leaves one running, prints it
    python3 -m tests.standby stop DIRECTORY
    python3 -m tests.standby cleanup      # stops every standby in the temp dir

How the standby is set up, and what to know when testing against it:

* Configuration. Debian keeps postgresql.conf and pg_hba.conf in /etc, so the
  clone holds neither: the standby gets a postgresql.conf with the settings the
  primary took from its configuration files (time zone, date style, locales,
  max_connections, max_prepared_transactions, ...: the settings hot standby
  requires to be at least the primary's are copied from the running primary),
  then its own port, listen_addresses = 127.0.0.1, its socket in its
  directory, hot_standby = on, recovery_min_apply_delay, fsync = off, and a
  pg_hba.conf trusting local and 127.0.0.1 connections, as the primary's does.
  The server log is ``standby.log`` in the directory (``Standby.log_text()``).
* WAL flows at once, only applying is delayed. The walreceiver receives and
  flushes each commit record as soon as the primary flushes it; the startup
  process then sleeps until the commit's timestamp + recovery_min_apply_delay
  and applies it without waiting for more WAL traffic, so a row committed on
  an idle primary is visible on the standby after the delay plus a few
  milliseconds (measured here: 500 ms delay -> visible after 0.501-0.502 s,
  1000 ms -> 1.003 s). The delay counts from the commit timestamp taken on
  the primary's clock (the same clock here).
* Only commit records (COMMIT, COMMIT PREPARED) wait; everything else in the
  WAL is replayed as it arrives. So locks taken on the primary are taken on
  the standby at once: after DROP TABLE / TRUNCATE / ALTER TABLE (ACCESS
  EXCLUSIVE locks) on the primary, reads of that table on the standby block
  until the commit is applied, that is for up to the delay (measured: a
  SELECT right after a TRUNCATE took 0.50 s with a 500 ms delay), rather than
  seeing the old data. The other way round, a standby transaction holding a
  lock (any open transaction that read the table) holds up replay of such a
  change for up to max_standby_streaming_delay (30 s by default) and is then
  cancelled: read from the standby in autocommit or short transactions.
* ``catch_up()`` waits until the standby has replayed everything the primary
  had written when it was called, which includes waiting out the delay.
* The standby streams from a physical replication slot named after its
  directory, so the primary keeps the WAL the standby has not received while
  it is paused or frozen. ``stop()`` drops the slot; slots of standbys whose
  directory is gone (a crashed test run) are dropped by ``prepare_primary()``
  and ``start_standby()``. A standby that stays paused keeps WAL on the
  primary: stop it. A standby left running by a killed test process keeps
  running: ``python3 -m tests.standby cleanup`` stops it.
* ``pause()`` shuts the standby down (connections are refused, quickly);
  ``freeze()`` SIGSTOPs all its processes, like a hung host (connections hang
  until their connect_timeout, which libpq makes at least 2 s).
  ``resume()`` / ``thaw()`` undo them.
* If the primary goes away, the standby keeps serving reads and retries
  connecting every 100 ms (wal_retrieve_retry_interval).
* Speed. The directory goes to /dev/shm when it is a writable tmpfs with room
  (else the temp dir; RHOSOCIAL_AR_STANDBY_TMPDIR overrides): the clone is
  some 2,000 small files, which pg_basebackup writes in 0.15 s on tmpfs but
  2 s on this machine's ext4. Measured here: start_standby() 0.23-0.28 s
  (pg_basebackup 0.17-0.21 s), pause() 0.02 s, resume() 0.05 s, stop() 0.05-0.09 s.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
import sqlalchemy as sa

DEFAULT_PRIMARY_URL = "postgresql+psycopg2://root@127.0.0.1:5432/rhosocial_ar_test"
OS_USER = "postgres"  # runs pg_basebackup and the standby, owns its directory
REPLICATION_ROLE = "postgres"  # the role pg_basebackup and the walreceiver connect as
PREFIX = "rhosocial_ar_standby_"  # of directories, slot names and cluster names
HBA_LINE = "host    replication     all             127.0.0.1/32            trust"
STANDBY_HBA = """\
# written by tests/standby.py for a throwaway standby
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
host    replication     all             127.0.0.1/32            trust
"""

# the settings a hot standby needs at least as high as on its primary
REQUIRED_AT_LEAST_PRIMARY = (
    "max_connections",
    "max_prepared_transactions",
    "max_locks_per_transaction",
    "max_worker_processes",
    "max_wal_senders",
)
# primary settings not copied to the standby: its own place, files and role
NOT_COPIED = {
    "port",
    "listen_addresses",
    "unix_socket_directories",
    "unix_socket_group",
    "unix_socket_permissions",
    "external_pid_file",
    "cluster_name",
    "config_file",
    "data_directory",
    "hba_file",
    "ident_file",
    "include",
    "include_dir",
    "include_if_exists",
    "logging_collector",
    "log_destination",
    "log_directory",
    "log_filename",
    "archive_mode",
    "archive_command",
    "archive_library",
    "restore_command",
    "primary_conninfo",
    "primary_slot_name",
    "hot_standby",
    "recovery_min_apply_delay",
    "synchronous_standby_names",
    "fsync",
    "wal_retrieve_retry_interval",
}


class StandbyError(RuntimeError):
    """The standby could not be prepared, started or stopped."""


# --------------------------------------------------------------------------- primary


def primary_url(url: str | sa.URL | None = None) -> sa.URL:
    """The primary's URL: ``url``, else RHOSOCIAL_AR_PG_URL, else the local test server."""
    return sa.make_url(url or os.environ.get("RHOSOCIAL_AR_PG_URL", DEFAULT_PRIMARY_URL))


def _connect(url: sa.URL, *, host: str | None = None, port: int | None = None, dbname: str = "postgres",
             timeout: float = 5, **kwargs: Any) -> Any:
    conn = psycopg2.connect(
        host=host or url.host or "127.0.0.1",
        port=port or url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=dbname,
        connect_timeout=max(2, round(timeout)),  # libpq waits at least 2 s
        **kwargs,
    )
    conn.autocommit = True
    return conn


@contextlib.contextmanager
def _session(url: sa.URL, **kwargs: Any) -> Iterator[Any]:
    conn = _connect(url, **kwargs)
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def _one(cur: Any, sql: str, params: Any = None) -> Any:
    cur.execute(sql, params)
    row = cur.fetchone()
    return None if row is None else row[0]


def _replication_problem(url: sa.URL) -> str | None:
    """None when REPLICATION_ROLE may open a replication connection over TCP, else why not."""
    try:
        conn = psycopg2.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=REPLICATION_ROLE,
            dbname="replication",
            connect_timeout=5,
            connection_factory=psycopg2.extras.PhysicalReplicationConnection,
        )
    except psycopg2.OperationalError as exc:
        return str(exc).strip()
    try:
        with conn.cursor() as cur:
            cur.execute("IDENTIFY_SYSTEM")
            cur.fetchall()
    finally:
        conn.close()
    return None


def _temp_bases() -> list[Path]:
    """Where standby directories go: RHOSOCIAL_AR_STANDBY_TMPDIR, else /dev/shm or the temp dir."""
    override = os.environ.get("RHOSOCIAL_AR_STANDBY_TMPDIR")
    if override:
        return [Path(override)]
    return [Path("/dev/shm"), Path(tempfile.gettempdir())]


def _choose_temp_base(needed: int) -> Path:
    """The first base that is writable and has ``needed`` bytes free (tmpfs first: a clone is
    thousands of small files, which a tmpfs creates ten times faster than a disk)."""
    for base in _temp_bases():
        with contextlib.suppress(OSError):
            stat = os.statvfs(base)
            if base.is_dir() and os.access(base, os.W_OK) and stat.f_bavail * stat.f_frsize >= needed:
                return base
    return _temp_bases()[-1]


def _drop_stale_slots(cur: Any) -> list[str]:
    """Drop inactive slots of ours whose standby directory no longer exists."""
    cur.execute(
        "SELECT slot_name FROM pg_replication_slots WHERE NOT active AND slot_name LIKE %s",
        (PREFIX.replace("_", r"\_") + "%",),
    )
    dropped = []
    for (name,) in cur.fetchall():
        if not any((base / name).exists() for base in _temp_bases()):
            with contextlib.suppress(psycopg2.Error):
                cur.execute("SELECT pg_drop_replication_slot(%s)", (name,))
                dropped.append(name)
    return dropped


def prepare_primary(url: str | sa.URL | None = None) -> list[str]:
    """Make the primary accept streaming replicas; idempotent. Returns what it changed.

    Checks wal_level, max_wal_senders and max_replication_slots (PostgreSQL's
    defaults suffice; if not, sets them with ALTER SYSTEM and raises, since they
    need a restart, which this never does). Appends ``HBA_LINE`` to the
    primary's pg_hba.conf and reloads (``pg_reload_conf()``) when the
    replication role cannot open a replication connection from 127.0.0.1.
    Drops replication slots left by standbys whose directory is gone.
    """
    url = primary_url(url)
    changes: list[str] = []
    with _session(url) as cur:
        settings = dict(_settings(cur, "wal_level", "max_wal_senders", "max_replication_slots", "hba_file",
                                  "cluster_name"))
        needs_restart = []
        if settings["wal_level"] == "minimal":
            needs_restart.append(("wal_level", "replica"))
        if int(settings["max_wal_senders"]) < 3:  # pg_basebackup takes 2, each standby 1
            needs_restart.append(("max_wal_senders", "10"))
        if int(settings["max_replication_slots"]) < 2:
            needs_restart.append(("max_replication_slots", "10"))
        if needs_restart:
            for name, value in needs_restart:
                cur.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            raise StandbyError(
                "the primary needs a restart for streaming replication: set with ALTER SYSTEM "
                + ", ".join(f"{n} = {v}" for n, v in needs_restart)
                + " (was " + ", ".join(f"{n} = {settings[n]}" for n, _ in needs_restart) + "); "
                "restart it, on Debian: pg_ctlcluster --skip-systemctl-redirect "
                + (settings["cluster_name"].replace("/", " ") or "VERSION main") + " restart"
            )
        changes += [f"dropped stale replication slot {name}" for name in _drop_stale_slots(cur)]

        problem = _replication_problem(url)
        if problem is not None and "pg_hba.conf" in problem:
            hba = Path(settings["hba_file"])
            if not hba.is_file():
                raise StandbyError(f"replication from 127.0.0.1 is refused ({problem}) and {hba} is not here")
            text = hba.read_text()
            if HBA_LINE not in text.splitlines():
                with hba.open("a") as f:
                    f.write(("" if text.endswith("\n") or not text else "\n")
                            + "# added by rhosocial_ar tests/standby.py: streaming replicas for tests\n"
                            + HBA_LINE + "\n")
                changes.append(f"appended to {hba}: {HBA_LINE}")
            cur.execute("SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL")
            errors = cur.fetchall()
            if errors:
                raise StandbyError(f"{hba} has errors, not reloading: {errors}")
            cur.execute("SELECT pg_reload_conf()")
            changes.append("reloaded the configuration (pg_reload_conf())")
            deadline = time.monotonic() + 10
            while (problem := _replication_problem(url)) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
        if problem is not None:
            raise StandbyError(
                f"the primary refuses replication connections of role {REPLICATION_ROLE} from 127.0.0.1: "
                f"{problem} (pg_hba.conf needs, before any other line matching them: {HBA_LINE})"
            )
    return changes


def _settings(cur: Any, *names: str) -> list[tuple[str, str]]:
    cur.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(names),))
    found = dict(cur.fetchall())
    return [(name, found[name]) for name in names]


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _standby_settings(cur: Any) -> dict[str, str]:
    """The primary's settings from its configuration files, and those hot standby requires."""
    cur.execute(
        "SELECT name, setting FROM pg_settings WHERE source = 'configuration file' "
        "OR name = ANY(%s) ORDER BY name",
        (list(REQUIRED_AT_LEAST_PRIMARY),),
    )
    return {name: setting for name, setting in cur.fetchall()
            if name.lower() not in NOT_COPIED and not name.startswith("ssl")}


def _bindir(server_version_num: int) -> Path:
    """The directory of the primary's major version's postgres and pg_basebackup."""
    major = server_version_num // 10000
    candidates = [os.environ.get("RHOSOCIAL_AR_PG_BINDIR", ""), f"/usr/lib/postgresql/{major}/bin"]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        candidates.append(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                         check=True).stdout.strip())
    for candidate in filter(None, candidates):
        path = Path(candidate)
        if not ((path / "postgres").is_file() and (path / "pg_basebackup").is_file()):
            continue
        version = subprocess.run([str(path / "postgres"), "--version"], capture_output=True, text=True).stdout
        if version.split()[-1].split(".")[0] == str(major):
            return path
    raise StandbyError(f"no PostgreSQL {major} binaries (postgres, pg_basebackup) in {candidates}; "
                       "set RHOSOCIAL_AR_PG_BINDIR")


# --------------------------------------------------------------------------- as postgres


def _as_os_user() -> dict[str, Any]:
    """subprocess arguments running a command as OS_USER, with its groups, home and a plain env."""
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        raise StandbyError(f"no OS user {OS_USER!r} to run the standby as") from None
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": entry.pw_dir, "LANG": "C.UTF-8",
           "LC_ALL": "C.UTF-8"}
    if os.geteuid() == entry.pw_uid:
        return {"env": env}
    if os.geteuid() != 0:
        raise StandbyError(f"run as root or as {OS_USER}: the standby must run as {OS_USER}")
    groups = [g for g in os.getgrouplist(OS_USER, entry.pw_gid) if g != entry.pw_gid]
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": groups, "env": env}


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)
    _chown(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return status.rsplit(")", 1)[1].split()[0] != "Z"


# --------------------------------------------------------------------------- the standby

_running: set[Standby] = set()


class Standby:
    """A running (or paused, or stopped) hot standby in its own temporary directory."""

    def __init__(self, directory: Path, port: int, delay_ms: int, primary: sa.URL, bindir: Path) -> None:
        self.directory = directory
        self.data_dir = directory / "data"
        self.log_path = directory / "standby.log"
        self.port = port
        self.delay_ms = delay_ms
        self.primary = primary
        self.bindir = bindir
        self.slot_name = directory.name
        self.pid: int | None = None
        self.timings: dict[str, float] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._frozen = False
        self._stopped = False

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "paused" if self.pid is None else f"pid {self.pid}"
        return f"<Standby 127.0.0.1:{self.port} delay {self.delay_ms} ms, {state}, {self.directory}>"

    def __enter__(self) -> Standby:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- connecting

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on the standby, as the primary's user."""
        url = self.primary.set(host="127.0.0.1", port=self.port, database=database)
        return url.render_as_string(hide_password=False)

    def connect(self, database: str = "postgres", timeout: float = 2) -> Any:
        """A psycopg2 connection (autocommit) to ``database`` on the standby."""
        return _connect(self.primary, host="127.0.0.1", port=self.port, dbname=database, timeout=timeout)

    @property
    def running(self) -> bool:
        return self.pid is not None and _alive(self.pid)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # ---- starting

    def _launch(self, timeout: float) -> None:
        """Start postgres on the data directory and wait until it streams; raise if it exits."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it open
        try:
            self._proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.directory, **_as_os_user(),
            )
        finally:
            log.close()
        self.pid = self._proc.pid  # postgres itself, no shell or runuser in between
        self._stopped = False
        _running.add(self)
        self._wait_ready(timeout)
        pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        if pid != self._proc.pid:
            raise StandbyError(f"postmaster.pid says {pid}, started {self._proc.pid}")

    def _wait_ready(self, timeout: float) -> None:
        """Until the standby accepts connections, is in recovery and its walreceiver streams.

        Asks through the standby's own unix socket first, so that whatever else may listen on
        the port cannot answer (postgres exits when it cannot bind listen_addresses), then
        checks over TCP that the port is the standby's.
        """
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        last: object = "not tried"
        while True:
            if self._proc.poll() is not None:
                raise StandbyError(f"the standby exited with {self._proc.returncode}:\n"
                                   f"{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise StandbyError(f"the standby is not ready after {timeout} s ({last}):\n"
                                   f"{self.log_text()[-3000:]}")
            try:
                with _session(self.primary, host=str(self.directory), port=self.port, timeout=2) as cur:
                    in_recovery = _one(cur, "SELECT pg_is_in_recovery()")
                    status = _one(cur, "SELECT status FROM pg_stat_wal_receiver")
                if not in_recovery:
                    raise StandbyError("the standby is not in recovery: it is a primary")
                if status == "streaming":
                    with _session(self.primary, host="127.0.0.1", port=self.port, timeout=2) as cur:
                        name = _one(cur, "SHOW cluster_name")
                    if name != self.slot_name:
                        raise StandbyError(f"127.0.0.1:{self.port} is {name!r}, not the standby")
                    return
                last = f"walreceiver {status or 'not started'}"
            except psycopg2.OperationalError as exc:
                last = str(exc).strip()
            time.sleep(0.02)

    # ---- states

    def _signal_group(self, sig: int) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    def _shutdown(self, timeout: float) -> None:
        """Fast shutdown (SIGINT) of the postmaster, then SIGQUIT, then SIGKILL to its process group."""
        pid = self.pid
        if pid is None:
            return
        self.thaw()
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                if sig == signal.SIGKILL:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)
            if self._wait_gone(pid, wait):
                break
        else:
            raise StandbyError(f"the standby's postmaster {pid} survived SIGKILL")
        if sig != signal.SIGINT:  # children of a killed postmaster may linger a moment
            self._signal_group(signal.SIGKILL)
        self.pid = None
        self._proc = None
        _running.discard(self)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def pause(self, timeout: float = 10) -> None:
        """Shut the standby down, keeping its directory: connections are refused until resume()."""
        self._shutdown(timeout)

    def resume(self, timeout: float = 30) -> None:
        """Start a paused standby again on the same port; returns once it streams."""
        if self._stopped:
            raise StandbyError("the standby was stopped; start a new one")
        if self.pid is not None:
            self.thaw()
            return
        started = time.monotonic()
        self._launch(timeout)
        self.timings["resume"] = time.monotonic() - started

    def _children(self) -> list[int]:
        """The postmaster's children: each calls setsid(), so signals to its group miss them."""
        found = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True)
        return [int(pid) for pid in found.stdout.split()]

    def freeze(self) -> None:
        """SIGSTOP every process of the standby: new connections hang until their
        connect_timeout, and so do statements on connections already open."""
        if self.pid is None:
            raise StandbyError("the standby is not running")
        self._signal_group(signal.SIGSTOP)        # first the postmaster: it forks no more
        for child in self._children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """SIGCONT after freeze()."""
        if self.pid is not None:
            for child in self._children():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGCONT)
        self._signal_group(signal.SIGCONT)
        self._frozen = False

    def catch_up(self, timeout: float = 10) -> float:
        """Wait until the standby replayed all the primary had written now (the delay included).

        Returns the seconds waited.
        """
        started = time.monotonic()
        with _session(self.primary) as cur:
            target = _one(cur, "SELECT pg_current_wal_lsn()")
        with _session(self.primary, host="127.0.0.1", port=self.port, timeout=2) as cur:
            while not _one(cur, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)):
                if time.monotonic() - started > timeout:
                    replayed = _one(cur, "SELECT pg_last_wal_replay_lsn()")
                    raise StandbyError(f"the standby replayed up to {replayed}, not {target}, in {timeout} s")
                time.sleep(0.01)
        return time.monotonic() - started

    def stop(self, timeout: float = 10) -> None:
        """Stop the standby (by its pid), drop its replication slot and remove its directory."""
        if self._stopped:
            return
        self._shutdown(timeout)
        self._stopped = True
        _running.discard(self)
        problem = None
        try:
            self._drop_slot()
        except Exception as exc:  # still remove the directory; stale slots are dropped later
            problem = exc
        shutil.rmtree(self.directory, ignore_errors=True)
        if problem is not None:
            raise StandbyError(f"stopped the standby but could not drop slot {self.slot_name}: {problem}")

    def _drop_slot(self) -> None:
        deadline = time.monotonic() + 10
        with _session(self.primary) as cur:
            while True:  # the primary's walsender may take a moment to notice the standby is gone
                active = _one(cur, "SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                              (self.slot_name,))
                if active is None:
                    return
                if not active:
                    with contextlib.suppress(psycopg2.errors.UndefinedObject):
                        cur.execute("SELECT pg_drop_replication_slot(%s)", (self.slot_name,))
                    return
                if time.monotonic() > deadline:
                    raise StandbyError(f"slot {self.slot_name} still active")
                time.sleep(0.02)

    # ---- for the command line

    def _save(self) -> None:
        state = {"port": self.port, "delay_ms": self.delay_ms, "bindir": str(self.bindir),
                 "primary": self.primary.render_as_string(hide_password=False)}
        _write(self.directory / "standby.json", json.dumps(state))

    @classmethod
    def load(cls, directory: str | Path) -> Standby:
        """The standby in ``directory``, started by another process (``python3 -m tests.standby start``)."""
        directory = Path(directory)
        state = json.loads((directory / "standby.json").read_text())
        standby = cls(directory, state["port"], state["delay_ms"], sa.make_url(state["primary"]),
                      Path(state["bindir"]))
        pid_file = standby.data_dir / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            standby.pid = pid if _alive(pid) else None
        return standby


def start_standby(delay_ms: int = 500, *, primary: str | sa.URL | None = None, timeout: float = 60,
                  settings: dict[str, str] | None = None) -> Standby:
    """Clone the primary with pg_basebackup -R and start a hot standby of it on a free port.

    ``delay_ms`` is recovery_min_apply_delay; ``settings`` are extra
    postgresql.conf settings for the standby (e.g. max_standby_streaming_delay).
    Returns once the standby accepts connections, is in recovery and streams.
    """
    started = time.monotonic()
    url = primary_url(primary)
    prepare_primary(url)
    with _session(url) as cur:
        bindir = _bindir(int(_one(cur, "SHOW server_version_num")))
        copied = _standby_settings(cur)
        size = int(_one(cur, "SELECT sum(pg_database_size(oid)) FROM pg_database"))
    run_as = _as_os_user()

    # room for the clone twice over and a gigabyte of WAL
    directory = Path(tempfile.mkdtemp(prefix=PREFIX, dir=_choose_temp_base(2 * size + 2**30)))
    directory.chmod(0o700)
    _chown(directory)
    standby = Standby(directory, 0, delay_ms, url, bindir)
    try:
        command = [
            str(bindir / "pg_basebackup"), "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432),
            "-U", REPLICATION_ROLE, "-w", "-D", str(standby.data_dir), "-R", "-X", "stream",
            "-C", "-S", standby.slot_name, "-c", "fast", "--no-sync",
        ]
        backup = subprocess.run(command, capture_output=True, text=True, cwd=directory, timeout=timeout,
                                **run_as)
        if backup.returncode != 0:
            raise StandbyError(f"{' '.join(command)} failed ({backup.returncode}): {backup.stderr.strip()}")
        standby.timings["basebackup"] = time.monotonic() - started

        # the standby's own settings go last, and out of postgresql.auto.conf, so they win
        own = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(directory),
            "cluster_name": standby.slot_name,
            "hot_standby": "on",
            "recovery_min_apply_delay": f"{int(delay_ms)}ms",
            "wal_retrieve_retry_interval": "100ms",
            "fsync": "off",
            **(settings or {}),
        }
        lines = ["# written by tests/standby.py: the primary's settings, then the standby's own"]
        lines += [f"{name} = {_quote(value)}" for name, value in copied.items() if name not in own]
        lines += [f"{name} = {_quote(value)}" for name, value in own.items()]
        _write(standby.data_dir / "postgresql.conf", "\n".join(lines) + "\n")
        auto = standby.data_dir / "postgresql.auto.conf"
        kept = [line for line in auto.read_text().splitlines()
                if line.split("=", 1)[0].strip().lower() not in {*own, "port"}]
        _write(auto, "\n".join(kept) + "\n")
        _write(standby.data_dir / "pg_hba.conf", STANDBY_HBA)
        _write(standby.data_dir / "pg_ident.conf", "")
        _write(standby.log_path, "")

        for attempt in range(3):  # another process may take the free port before postgres binds it
            standby.port = _free_port()
            try:
                standby._launch(max(5.0, timeout - (time.monotonic() - started)))
                break
            except StandbyError:
                if attempt == 2 or standby._proc is None or standby._proc.poll() is None \
                        or "already in use" not in standby.log_text():
                    raise
        standby._save()
        standby.timings["start"] = time.monotonic() - started
        return standby
    except BaseException:
        with contextlib.suppress(Exception):
            standby.stop()
        shutil.rmtree(directory, ignore_errors=True)
        raise


@contextlib.contextmanager
def running_standby(delay_ms: int = 500, **kwargs: Any) -> Iterator[Standby]:
    """A standby for the duration of the block; always stopped and removed afterwards."""
    standby = start_standby(delay_ms, **kwargs)
    try:
        yield standby
    finally:
        standby.stop()


def standby_problem(primary: str | sa.URL | None = None) -> str | None:
    """None when a standby can be started here, else why not (without changing anything)."""
    try:
        _as_os_user()
        url = primary_url(primary)
        with _session(url) as cur:
            _bindir(int(_one(cur, "SHOW server_version_num")))
    except (StandbyError, psycopg2.Error) as exc:
        return str(exc).strip()
    return None


def cleanup() -> list[str]:
    """Stop every standby in the temporary directory (of any process) and drop stale slots."""
    done = []
    for directory in sorted(d for base in _temp_bases() for d in base.glob(PREFIX + "*")):
        if (directory / "standby.json").exists():
            Standby.load(directory).stop()
        else:  # died before it was started
            pid_file = directory / "data" / "postmaster.pid"
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.killpg(int(pid_file.read_text().split()[0]), signal.SIGKILL)
            shutil.rmtree(directory, ignore_errors=True)
        done.append(f"removed {directory}")
    with _session(primary_url()) as cur:
        done += [f"dropped stale replication slot {name}" for name in _drop_stale_slots(cur)]
    return done


@atexit.register
def _stop_all() -> None:
    for standby in list(_running):
        with contextlib.suppress(Exception):
            standby.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.standby", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prepare", help="make the primary accept streaming replicas (idempotent)")
    start = commands.add_parser("start", help="start a standby and leave it running")
    start.add_argument("--delay-ms", type=int, default=500)
    stop = commands.add_parser("stop", help="stop the standby in DIRECTORY and remove it")
    stop.add_argument("directory")
    commands.add_parser("cleanup", help="stop all standbys in the temporary directory")
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            changes = prepare_primary()
            print("\n".join(changes) if changes else "primary ready for streaming replicas, nothing changed")
        elif args.command == "start":
            standby = start_standby(args.delay_ms)
            _running.discard(standby)  # outlive this process
            print(f"standby {standby.url('postgres')} pid {standby.pid} in {standby.directory} "
                  f"(started in {standby.timings['start']:.2f} s)")
            print(f"stop it with: python3 -m tests.standby stop {standby.directory}")
        elif args.command == "stop":
            Standby.load(args.directory).stop()
        else:
            print("\n".join(cleanup()) or "nothing to clean up")
    except StandbyError as exc:
        print(f"tests.standby: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
