"""Throwaway PostgreSQL clusters for the sharding benchmark, started and stopped by pid.

    with clusters(4) as urls:        # ['postgresql+psycopg2://postgres@127.0.0.1:PORT/postgres', ...]
        ...

Each cluster is an ``initdb`` of its own in /dev/shm on a free port, run as
the ``postgres`` OS user when this runs as root (initdb refuses root), with
fsync off (the benchmark measures queries, not the disk) and prepared
transactions on (rebalance moves rows with two-phase commit). Copied from
tests/servers.py so that bench/ does not depend on tests/.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

OS_USER = "postgres"
SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
            "max_prepared_transactions": "50", "max_connections": "100"}


def bindir() -> Path:
    """The directory holding initdb and postgres (RHOSOCIAL_AR_PG_BINDIR, pg_config, or the newest)."""
    candidates = [os.environ.get("RHOSOCIAL_AR_PG_BINDIR", "")]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        candidates.append(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                         check=True).stdout.strip())
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        candidates += [str(p / "bin") for p in sorted(root.iterdir(), reverse=True)]
    for candidate in filter(None, candidates):
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "postgres").is_file():
            return path
    raise RuntimeError(f"no initdb/postgres in {candidates}; set RHOSOCIAL_AR_PG_BINDIR")


def _as_os_user() -> dict[str, Any]:
    """subprocess arguments running as OS_USER when this process is root."""
    entry = pwd.getpwnam(OS_USER)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": entry.pw_dir,
           "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    if os.geteuid() != 0:
        return {"env": env}
    return {"user": entry.pw_uid, "group": entry.pw_gid, "env": env}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, timeout: float = 60.0) -> None:
    """Retry ``SELECT 1`` on ``url`` until it answers (the server's last error after ``timeout``)."""
    engine = sa.create_engine(url, connect_args={"connect_timeout": 2})
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
                return
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
    finally:
        engine.dispose()


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGINT)      # fast shutdown
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@contextlib.contextmanager
def clusters(count: int) -> Iterator[list[str]]:
    """``count`` new clusters; yields their URLs (database ``postgres``); stopped on the way out,
    also on Ctrl-C or an error."""
    binaries, run_as = bindir(), _as_os_user()
    base = Path(tempfile.mkdtemp(prefix="rar-bench-shards-",
                                 dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(OS_USER)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    servers: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for index in range(count):
            data, port = base / f"pg{index}", _free_port()
            subprocess.run([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U",
                            "postgres", "--no-sync"], check=True, capture_output=True, timeout=120,
                           **run_as)
            options = [f"-c{k}={v}" for k, v in {"listen_addresses": "127.0.0.1",
                                                 "port": str(port),
                                                 "unix_socket_directories": str(base),
                                                 **SETTINGS}.items()]
            # a session of its own: Ctrl-C reaches this process, which stops them by pid
            servers.append(subprocess.Popen([str(binaries / "postgres"), "-D", str(data), *options],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            start_new_session=True, **run_as))
            urls.append(f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres")
        for url in urls:
            wait_until_up(url)
        yield urls
    finally:
        for server in servers:
            _stop(server)
        shutil.rmtree(base, ignore_errors=True)
