"""``rhosocial-ar transfer`` end to end, in a separate process (and scripts/transfer_rows.py,
which runs it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import SERVER_URLS, require_backend

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "transfer_rows.py"

APP = """
from rhosocial_ar import ActiveRecord, ConnectionManager, IntegerPKMixin

ConnectionManager.configure({{'a': {{'url': {a!r}}}, 'b': {{'url': {b!r}}}}})


class Ticket(IntegerPKMixin, ActiveRecord):
    __table_name__ = 'script_tickets'
    __connection__ = 'a'
    title: str
"""


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rhosocial_ar", "transfer", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def setup_app(tmp_path: Path, a: str, b: str) -> None:
    (tmp_path / "ticket_app.py").write_text(textwrap.dedent(APP.format(a=a, b=b)))
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib

        app = importlib.import_module("ticket_app")
        ticket = app.Ticket
        for name in ("a", "b"):
            with ticket.using_connection(name):
                ticket.drop_table()
                ticket.create_table()
        ticket.bulk_insert([{"title": f"t{i}"} for i in range(1, 301)])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("ticket_app", None)


@pytest.mark.parametrize("where", ["sqlite", "servers"])
def test_moves_rows_between_connections(tmp_path, where):
    if where == "sqlite":
        a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    else:
        require_backend("postgresql")
        require_backend("mysql")
        a, b = SERVER_URLS["postgresql"][0], SERVER_URLS["mysql"][1]
    setup_app(tmp_path, a, b)
    copied = run(tmp_path, "--app", "ticket_app", "Ticket", "--from", "a", "--to", "b",
                 "--where", "id <= ?", "100", "--no-progress")
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout.startswith("copied 100 rows of Ticket from 'a' to 'b' in 1 batches")
    moved = run(tmp_path, "--app", "ticket_app", "Ticket", "--from", "a", "--to", "b",
                "--move", "--batch-size", "120", "--recover-first", "--no-progress")
    assert moved.returncode == 0, moved.stderr
    assert "moved 300 rows" in moved.stdout and "in 3 batches" in moved.stdout
    strategy = "idempotent" if where == "sqlite" else "two-phase"
    assert f"({strategy})" in moved.stdout
    again = run(tmp_path, "--app", "ticket_app", "Ticket", "--from", "a", "--to", "b", "--move",
                "--no-progress")
    assert "moved 0 rows" in again.stdout


@pytest.mark.parametrize("args, message", [
    ([], "--app"),
    (["--app", "no_such_app"], "app module 'no_such_app' not found"),
    (["--app", "ticket_app.py", "--where", "nope = ?", "1"], "no such column"),
    (["--app", "ticket_app", "--to", "nowhere"], "no connection named 'nowhere'"),
    (["--app", "ticket_app", "--model-typo"], "unrecognized arguments"),
])
def test_errors_are_one_line(tmp_path, args, message):
    setup_app(tmp_path, f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    argv = ["Ticket", "--from", "a", "--to", "b", *args]
    if "--to" in args:
        argv = ["Ticket", "--from", "a", *args]
    failed = run(tmp_path, *argv)
    assert failed.returncode != 0
    assert message in failed.stderr
    assert "Traceback" not in failed.stderr


def test_help():
    shown = subprocess.run([sys.executable, "-m", "rhosocial_ar", "transfer", "--help"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "--move" in shown.stdout and "--app" in shown.stdout


def test_the_script_runs_the_command(tmp_path):
    setup_app(tmp_path, f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    done = subprocess.run([sys.executable, str(SCRIPT), "--app", "ticket_app", "Ticket",
                           "--from", "a", "--to", "b", "--move", "--no-progress"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("moved 300 rows of Ticket from 'a' to 'b' in 1 batches")


def test_a_model_name_two_modules_share(tmp_path):
    setup_app(tmp_path, f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    (tmp_path / "ticket_twin.py").write_text(
        "import ticket_app\nfrom rhosocial_ar import ActiveRecord\n\n"
        "class Ticket(ActiveRecord):\n    __table_name__ = 'twin_tickets'\n"
        "    id: int | None = None\n")
    twice = run(tmp_path, "--app", "ticket_twin", "Ticket", "--from", "a", "--to", "b")
    assert twice.returncode == 1
    assert twice.stderr == ("rhosocial-ar: error: 'Ticket' names several models: "
                            "ticket_app.Ticket, ticket_twin.Ticket; give one of these\n")
    chosen = run(tmp_path, "--app", "ticket_twin", "ticket_app.Ticket", "--from", "a", "--to", "b",
                 "--no-progress")
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.startswith("copied 300 rows of Ticket")
