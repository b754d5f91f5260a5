"""Restart the local database servers (for tests of what survives a restart)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from bench.shard_servers import wait_until_up as _wait


def restart_postgresql(url: str) -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                   check=True, capture_output=True, timeout=120)
    _wait(url)


def restart_mariadb(url: str) -> None:
    subprocess.run(["mariadb-admin", "-h", "127.0.0.1", "-u", "root", "shutdown"],
                   check=True, capture_output=True, timeout=120)
    deadline = time.monotonic() + 60
    while subprocess.run(["pgrep", "-x", "mariadbd"], capture_output=True).returncode == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("mariadbd did not stop")
        time.sleep(0.2)
    Path("/run/mysqld").mkdir(exist_ok=True)
    subprocess.run(["chown", "mysql:mysql", "/run/mysqld"], check=False)
    subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background",
                    "--exec", "/usr/sbin/mariadbd"], check=True, capture_output=True, timeout=60)
    _wait(url)


@contextlib.contextmanager
def scratch_postgresql(**settings: str) -> Iterator[str]:
    """A throwaway PostgreSQL cluster (initdb defaults plus ``settings``); yields its URL."""
    from tests.standby import _as_os_user, _bindir, _chown, _free_port

    bindir = _bindir(150000)
    base = Path(tempfile.mkdtemp(prefix="rar-scratch-pg-", dir="/dev/shm"
                                 if Path("/dev/shm").is_dir() else None))
    _chown(base)
    data, port, run_as = base / "data", _free_port(), _as_os_user()
    subprocess.run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                    "--no-sync"], check=True, capture_output=True, timeout=120, **run_as)
    options = [f"-c{k}={v}" for k, v in {"listen_addresses": "127.0.0.1", "port": str(port),
                                         "unix_socket_directories": str(base), "fsync": "off",
                                         **settings}.items()]
    server = subprocess.Popen([str(bindir / "postgres"), "-D", str(data), *options],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True, **run_as)
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    try:
        _wait(url, timeout=30)
        yield url
    finally:
        server.send_signal(signal.SIGINT)      # fast shutdown
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(base, ignore_errors=True)


def scratch_mariadb_problem() -> str | None:
    """None when a throwaway MariaDB instance can be started here, else why not."""
    missing = [p for p in ("mariadb-install-db", "mariadbd")
               if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]
    if missing:
        return f"{', '.join(missing)} not found (apt-get install mariadb-server)"
    if os.geteuid() != 0:
        return "run as root: the instance runs as the mysql OS user"
    return None


@contextlib.contextmanager
def scratch_mariadb(database: str = "shard") -> Iterator[str]:
    """A throwaway MariaDB instance (own data directory, socket and port, started and stopped
    by pid) with one empty database; yields its URL."""
    from tests.standby import _free_port

    base = Path(tempfile.mkdtemp(prefix="rar-scratch-mariadb-", dir="/dev/shm"
                                 if Path("/dev/shm").is_dir() else None))
    shutil.chown(base, "mysql", "mysql")
    data, port = base / "data", _free_port()
    env = {**os.environ, "TMPDIR": str(base)}     # the mysql user may not write the caller's
    try:
        subprocess.run(["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={data}",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=120, env=env)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    server = subprocess.Popen([mariadbd, "--no-defaults", "--user=mysql", f"--datadir={data}",
                               f"--socket={base / 'sock'}", f"--port={port}",
                               "--bind-address=127.0.0.1", f"--pid-file={base / 'pid'}",
                               "--innodb-buffer-pool-size=16M", "--innodb-flush-log-at-trx-commit=0",
                               f"--log-error={base / 'error.log'}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True, env=env)
    url = f"mysql+pymysql://root@127.0.0.1:{port}/{database}"
    try:
        _wait(url.rsplit("/", 1)[0] + "/mysql", timeout=30)
        admin = sa.create_engine(url.rsplit("/", 1)[0] + "/mysql")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        admin.dispose()
        yield url
    finally:
        server.send_signal(signal.SIGTERM)     # a clean shutdown
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(base, ignore_errors=True)
