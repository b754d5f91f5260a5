"""The machine and the versions a run measured with.

    info = describe(targets)
    info['cpu'], info['versions']['SQLAlchemy'], info['servers']['postgresql']
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from importlib import metadata
from typing import Any

PACKAGES = {
    "SQLAlchemy": "sqlalchemy",
    "pydantic": "pydantic",
    "peewee": "peewee",
    "psycopg2": "psycopg2-binary",
    "PyMySQL": "pymysql",
    "rhosocial_ar": "rhosocial_ar",
}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def _version(dist: str) -> str:
    for name in (dist, dist.replace("-binary", "")):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def git_commit() -> str:
    """The checkout's commit, with ``+dirty`` when rhosocial_ar/ has uncommitted changes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "rhosocial_ar"], cwd=root,
                               text=True, capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def describe(servers: dict[str, str]) -> dict[str, Any]:
    """CPU, cores, memory, OS, Python and package versions; ``servers`` maps db to version."""
    memory = memory_gib()
    versions = {"Python": platform.python_version(), "sqlite3 library": sqlite3.sqlite_version}
    versions.update({label: _version(dist) for label, dist in PACKAGES.items()})
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory": f"{memory:.0f} GiB" if memory else "unknown",
        "os": platform.platform(),
        "versions": versions,
        "servers": servers,
        "commit": git_commit(),
    }


def lines(info: dict[str, Any]) -> list[str]:
    """The description as short lines of text."""
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    out = [f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory']}, {info['os']}",
           f"Versions: {versions}; rhosocial_ar at commit {info['commit']}"]
    if info["servers"]:
        out.append("Databases: " + ", ".join(info["servers"].values()))
    return out
