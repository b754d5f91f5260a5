"""``rhosocial-ar db``: in-process through ``cli.main`` and once as a command.

The app is a module written into a temporary directory: it configures two
connections and declares their models, as a user's settings module would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from rhosocial_ar import ConnectionManager, registry
from rhosocial_ar.cli import APP_VARIABLE, build_parser, main

from .conftest import Backend

APP = '''
from rhosocial_ar import ActiveRecord, ConnectionManager, Field

ConnectionManager.configure({{"shop": {{"url": {shop!r}}}, "stats": {{"url": {stats!r}}}}})


class Product(ActiveRecord):
    __table_name__ = "products"
    __connection__ = "shop"
    id: int | None = None
    title: str = Field(max_length=80)
{extra}

class Hit(ActiveRecord):
    __table_name__ = "hits"
    __connection__ = "stats"
    id: int | None = None
    path: str = Field(max_length=200, index=True)
'''
PRICE = "    price: int = 0\n"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """cwd = tmp_path, a registry of the test's own, and the app modules forgotten afterwards."""
    monkeypatch.setattr(registry, "_metadata", {})
    monkeypatch.setattr(registry, "_by_name", defaultdict(list))   # models by name for relations
    monkeypatch.setattr(registry, "_by_table", defaultdict(list))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv(APP_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    ConnectionManager.reset()
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("shopapp")]:
        del sys.modules[name]
    ConnectionManager.reset()


def write_app(directory: Path, backend: Backend | None = None, extra: str = "",
              name: str = "shopapp") -> str:
    urls = backend.urls if backend else (f"sqlite:///{directory / 'shop.db'}",
                                         f"sqlite:///{directory / 'stats.db'}")
    (directory / f"{name}.py").write_text(APP.format(shop=urls[0], stats=urls[1], extra=extra))
    return name


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``rhosocial-ar db ARGS`` in-process: exit code, stdout, stderr."""
    code = main(["db", *args])
    out, err = capsys.readouterr()
    return code, out, err


def reload_app(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """What a new process would see: the app imported afresh into an empty registry."""
    del sys.modules[name]
    monkeypatch.setattr(registry, "_metadata", {})


def test_a_session(backend: Backend, isolated: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    app = write_app(isolated, backend)
    code, out, err = run(capsys, "revision", "--all", "-m", "first", "--autogenerate", "--app", app)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("shop: wrote migrations/shop/versions/") and lines[0].endswith("_first.py")
    assert lines[1].startswith("stats: wrote migrations/stats/versions/")

    code, out, _ = run(capsys, "current", "--all", "--app", app)
    assert out.splitlines()[0].startswith("shop: <base> (head is ")
    code, out, err = run(capsys, "check", "-c", "shop", "--app", app)
    assert code == 1 and "run upgrade" in out
    assert err.startswith("rhosocial-ar: error: models and database differ on 'shop'")

    code, out, err = run(capsys, "upgrade", "--all", "--app", app)
    assert (code, err) == (0, "")
    assert [line.split(":")[0] for line in out.splitlines()] == ["shop", "shop", "stats", "stats"]
    assert "Running upgrade  -> " in out and out.splitlines()[1].startswith("shop: now at ")
    code, out, _ = run(capsys, "check", "--all", "--app", app)
    assert (code, out) == (0, "shop: the database matches the models\n"
                              "stats: the database matches the models\n")
    code, out, _ = run(capsys, "revision", "-c", "shop", "-m", "again", "--autogenerate", "--app", app)
    assert out == "shop: no changes: the database matches the models; no revision written\n"

    # a model changes: check fails, a revision and an upgrade make it pass
    write_app(isolated, backend, extra=PRICE)
    reload_app(monkeypatch, app)
    code, out, err = run(capsys, "check", "--all", "--app", app)
    assert code == 1
    assert "shop: 1 difference\n  - add column products.price INTEGER" in out
    assert "stats: the database matches the models" in out
    assert err == "rhosocial-ar: error: models and database differ on 'shop' (listed above)\n"
    assert run(capsys, "revision", "-c", "shop", "-m", "price", "--autogenerate", "--app", app)[0] == 0
    assert run(capsys, "upgrade", "-c", "shop", "--app", app)[0] == 0
    assert run(capsys, "check", "--all", "--app", app)[0] == 0

    code, out, _ = run(capsys, "history", "-c", "shop", "--app", app)
    rows = out.splitlines()
    assert rows[0] == "shop:" and rows[1].endswith(" (head), price") and rows[2].startswith("  <base> -> ")
    head, first = rows[1].split()[2], rows[2].split()[2].rstrip(",")
    code, out, _ = run(capsys, "downgrade", "-c", "shop", "-1", "--app", app)
    assert out == (f"shop: Running downgrade {head} -> {first}, price\n"
                   f"shop: now at {first} (head is {head})\n")
    code, out, _ = run(capsys, "current", "-c", "shop", "--app", app)
    assert out == (f"shop: {first} (head is {head}: run `rhosocial-ar db upgrade -c shop "
                   f"--app {app}`)\n")     # a hint to copy as it is
    code, out, _ = run(capsys, "upgrade", "-c", "stats", "--app", app)
    assert out.startswith("stats: already at ")


def test_app_forms(isolated: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated / "shopapp_pkg").mkdir()
    (isolated / "shopapp_pkg" / "__init__.py").write_text("")
    (isolated / "shopapp_pkg" / "settings.py").write_text(
        "from rhosocial_ar import ConnectionManager\n\n"
        "def setup():\n    ConnectionManager.configure('default', {'url': 'sqlite:///x.db'})\n")
    code, out, err = run(capsys, "current", "-c", "default", "--app", "shopapp_pkg.settings:setup")
    assert (code, out, err) == (0, "default: <base> (no migrations yet)\n", "")
    ConnectionManager.reset()
    app = write_app(isolated / "shopapp_pkg", name="shopapp_file")
    monkeypatch.setenv(APP_VARIABLE, f"shopapp_pkg/{app}.py")      # a file, from the variable
    code, out, _ = run(capsys, "current", "--all")
    assert code == 1    # no chains yet
    code, out, _ = run(capsys, "check", "--all")
    assert code == 1 and out.count("no migrations yet") == 2


@pytest.mark.parametrize(("args", "message"), [
    (["upgrade", "-c", "nope", "--app", "shopapp"],
     "ConnectionNotFound: no connection named 'nope'; configured: ['shop', 'stats']"),
    (["upgrade", "-c", "shop", "--app", "no_such_app"],
     "app module 'no_such_app' not found (--app / $RHOSOCIAL_AR_APP); give a module importable "
     "from {cwd} or a path to a .py file"),
    (["upgrade", "-c", "shop", "--app", "gone.py"],
     "app file not found: gone.py (--app / $RHOSOCIAL_AR_APP)"),
    (["upgrade", "-c", "shop", "--app", "shopapp:nothing"],
     "app 'shopapp:nothing': shopapp has no function 'nothing'"),
    (["upgrade", "-c", "shop"],
     "no connections are configured: pass --app MODULE (or set $RHOSOCIAL_AR_APP) naming the "
     "module that configures them"),
    (["upgrade", "-c", "shop", "--app", "shopapp"],
     "MigrationError: no migrations yet for connection 'shop' in migrations/shop/versions; "
     "create the first with `rhosocial-ar db revision -c shop --autogenerate -m MESSAGE "
     "--app shopapp`"),
    (["history", "--all", "--app", "shopapp"],
     "MigrationError: no connection has migrations yet (looked in migrations)"),
    (["check", "-c", "shop", "--app", "shopapp"],
     "MigrationError: no migrations yet for connection 'shop' in migrations/shop/versions; "
     "create the first with `rhosocial-ar db revision -c shop --autogenerate -m MESSAGE "
     "--app shopapp`"),
])
def test_errors_are_one_line(isolated: Path, capsys: pytest.CaptureFixture[str],
                             args: list[str], message: str) -> None:
    write_app(isolated)
    code, out, err = run(capsys, *args)
    assert code == 1 and out == ""
    assert err == f"rhosocial-ar: error: {message.format(cwd=isolated)}\n"


def test_an_app_that_fails_shows_its_own_error(isolated: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (isolated / "shopapp_broken.py").write_text("import no_such_dependency\n")
    code, _, err = run(capsys, "current", "--all", "--app", "shopapp_broken")
    assert code == 1
    assert err == "rhosocial-ar: error: ModuleNotFoundError: No module named 'no_such_dependency'\n"


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "db        Alembic migrations per connection" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["db", "--help"])
    out = capsys.readouterr().out
    for command in ("init", "revision", "upgrade", "downgrade", "current", "history", "check",
                    "stamp", "heads", "branches", "merge"):
        assert f"\n    {command}" in out
    assert "$RHOSOCIAL_AR_APP" in out
    db = build_parser()._subparsers._group_actions[0].choices["db"]  # type: ignore[union-attr]
    for command, parser in db._subparsers._group_actions[0].choices.items():
        text = parser.format_help()
        assert parser.description, command
        assert "--directory DIR" in text
        if command != "init":
            # Python 3.13's argparse names the metavar once: "-c, --connection NAME"
            assert "-c NAME, --connection NAME" in text or "-c, --connection NAME" in text
            assert ("--all" in text) == (command != "merge") and "--app MODULE" in text


def test_as_a_command(isolated: Path) -> None:
    """The installed command, the app named by the environment variable, from another directory."""
    project = isolated / "project"
    project.mkdir()
    app = write_app(project)
    env = {**os.environ, APP_VARIABLE: app}

    def db(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rhosocial_ar.cli", "db", *args], cwd=project,
                              env=env, capture_output=True, text=True, timeout=60)

    done = db("revision", "--all", "-m", "first", "--autogenerate")
    assert done.returncode == 0 and done.stderr == ""
    done = db("upgrade", "--all")
    assert done.returncode == 0 and done.stderr == "" and "shop: now at" in done.stdout
    done = db("check", "--all")
    assert (done.returncode, done.stderr) == (0, "")
    done = db("downgrade", "-c", "nope", "base")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "rhosocial-ar: error: ConnectionNotFound: no connection named 'nope'; "
        "configured: ['shop', 'stats']"]


def test_the_demo_migrations_from_the_command_line(isolated: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``--app rhosocial_ar.demo:migration_app`` drives the project's own chains."""
    from rhosocial_ar.demo import packaged

    app = ["--app", "rhosocial_ar.demo:migration_app", "--directory", str(packaged("migrations"))]
    code, out, _ = run(capsys, "upgrade", "--all", *app)
    assert code == 0 and (isolated / "demo_data" / "sales.db").is_file()
    assert out.count("Running upgrade") == 4     # catalog: 2 revisions, sales: 2
    code, out, _ = run(capsys, "current", "--all", *app)
    assert out.count("(head)") == 2
    code, out, _ = run(capsys, "downgrade", "-c", "sales", "base", *app)
    assert code == 0 and out.count("Running downgrade") == 2
