"""Restart the local database servers (for tests of what survives a restart)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import sqlalchemy as sa


def _wait(url: str, timeout: float = 60.0) -> None:
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
