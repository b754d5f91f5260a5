"""The package as installed: its version, its entry points, its licence and its extras."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import rhosocial_ar
from rhosocial_ar.demo import packaged

ROOT = Path(__file__).resolve().parent.parent


def test_version_is_the_installed_one() -> None:
    assert rhosocial_ar.__version__ == importlib.metadata.version("rhosocial_ar")
    assert f"## {rhosocial_ar.__version__}" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")


def test_python_dash_m_and_version() -> None:
    for command in ([sys.executable, "-m", "rhosocial_ar", "--version"],
                    [sys.executable, "-m", "rhosocial_ar.cli", "--version"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout) == (0, f"rhosocial-ar {rhosocial_ar.__version__}\n")
    done = subprocess.run([sys.executable, "-m", "rhosocial_ar"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "COMMAND" in done.stderr     # argparse: a command is required


def test_licences() -> None:
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License\n")
    assert "MIT" in (packaged("chinook") / "LICENSE.md").read_text(encoding="utf-8")
    metadata = importlib.metadata.metadata("rhosocial_ar")
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE", "rhosocial_ar/demo/chinook/LICENSE.md"]


def _requirements() -> dict[str, set[str]]:
    """The installed requirements by extra ('' for the required ones), as package names."""
    found: dict[str, set[str]] = {}
    for line in importlib.metadata.requires("rhosocial_ar") or []:
        spec, _, marker = line.partition(";")
        extra = re.search(r"extra == ['\"]([\w-]+)['\"]", marker)
        name = re.match(r"[A-Za-z0-9_.-]+", spec.strip())
        assert name is not None
        found.setdefault(extra.group(1) if extra else "", set()).add(name.group(0).lower())
    return found


def test_drivers_are_extras() -> None:
    found = _requirements()
    drivers = {"psycopg2-binary", "pymysql"}
    assert not found[""] & drivers
    assert found["postgresql"] == {"psycopg2-binary"} and found["mysql"] == {"pymysql"}
    assert found["all"] == drivers
    assert drivers <= found["test"]        # the README's test command tests all three backends
