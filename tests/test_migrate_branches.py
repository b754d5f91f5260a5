"""``rhosocial-ar db`` as a team uses it: branches and merges, offline SQL, copyable hints,
models on connections nobody configured, and ``--app`` files inside a package.

Each test writes its app into a temporary directory (``test_migrate_cli``'s
``isolated`` fixture and ``write_app``) and runs on SQLite, PostgreSQL and
MariaDB where a database is involved.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from rhosocial_ar.cli import main

from .conftest import Backend
from .test_migrate_cli import isolated, run, write_app

__all__ = ["isolated"]    # the fixture, used here by name

TYPO = '''

class Visit(ActiveRecord):
    __table_name__ = "visits"
    __connection__ = "stast"
    id: int | None = None
'''


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_a_model_on_an_unconfigured_connection_is_an_error(
        isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = write_app(isolated, extra=TYPO)
    message = ("rhosocial-ar: error: MigrationError: shopapp.Visit has __connection__ 'stast', "
               "which is not configured (configured: 'shop', 'stats')\n")
    for command in (["check", "--all"], ["revision", "--all", "-m", "x", "--autogenerate"]):
        code, out, err = run(capsys, *command, "--app", app)
        assert (code, out, err) == (1, "", message), command
    assert not (isolated / "migrations").exists()      # nothing written before the refusal
    # one connection named with -c is checked as asked
    code, out, _ = run(capsys, "revision", "-c", "shop", "-m", "first", "--autogenerate", "--app", app)
    assert code == 0 and out.startswith("shop: wrote ")


def test_two_branches_are_merged(backend: Backend, isolated: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    app = write_app(isolated, backend)
    opts = ["-c", "shop", "--app", app]
    assert run(capsys, "revision", *opts, "-m", "first", "--autogenerate")[0] == 0
    assert run(capsys, "upgrade", *opts)[0] == 0
    # two developers each add a revision on top of 'first'
    versions = isolated / "migrations" / "shop" / "versions"
    assert run(capsys, "revision", *opts, "-m", "ann")[0] == 0
    (ann,) = versions.glob("*_ann.py")
    aside = ann.rename(isolated / ann.name)
    assert run(capsys, "revision", *opts, "-m", "bob")[0] == 0
    aside.rename(ann)
    first, ann_id = (next(versions.glob(f"*_{m}.py")).name[:12] for m in ("first", "ann"))
    bob_id = next(versions.glob("*_bob.py")).name[:12]

    code, out, err = run(capsys, "upgrade", *opts)
    assert code == 1 and "Multiple head revisions are present" in err
    assert err.rstrip().endswith(f"join them with `rhosocial-ar db merge -c shop -m MESSAGE "
                                 f"--app {app}`")
    code, out, _ = run(capsys, "heads", *opts)
    assert sorted(out.splitlines()) == sorted([f"shop: {ann_id} (head), ann",
                                               f"shop: {bob_id} (head), bob"])
    code, out, _ = run(capsys, "branches", "--all", "--app", app)
    assert out == f"shop: {first} -> {', '.join(sorted([ann_id, bob_id]))} (branchpoint)\n"

    code, out, err = run(capsys, "merge", *opts, "-m", "join ann and bob")
    assert (code, err) == (0, "") and out.startswith("shop: wrote migrations/shop/versions/")
    code, out, _ = run(capsys, "heads", *opts)
    (line,) = out.splitlines()
    merged = line.split()[1]
    assert line == f"shop: {merged} (head), join ann and bob"
    code, out, err = run(capsys, "upgrade", *opts)
    assert (code, err) == (0, "")
    assert out.count("Running upgrade") == 3 and out.endswith(f"shop: now at {merged} (head)\n")
    assert run(capsys, "check", *opts)[0] == 0


def test_offline_sql(backend: Backend, isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = write_app(isolated, backend)
    opts = ["-c", "shop", "--app", app]
    assert run(capsys, "revision", *opts, "-m", "first", "--autogenerate")[0] == 0
    head = next((isolated / "migrations" / "shop" / "versions").glob("*_first.py")).name[:12]
    before = tables(backend.urls[0])

    code, out, err = run(capsys, "upgrade", *opts, "--sql")
    assert (code, err) == (0, "")
    assert out.startswith("-- rhosocial-ar db upgrade head: connection 'shop'\n")
    assert "CREATE TABLE products" in out and "CREATE TABLE alembic_version_shop" in out
    assert f"INSERT INTO alembic_version_shop (version_num) VALUES ('{head}')" in out
    assert "hits" not in out                     # the other connection's table
    code, out, err = run(capsys, "downgrade", *opts, "--sql", f"{head}:base")
    assert (code, err) == (0, "") and "DROP TABLE products" in out
    assert tables(backend.urls[0]) == before     # neither touched the database
    code, out, err = run(capsys, "current", *opts)
    assert out == f"shop: <base> (head is {head}: run `rhosocial-ar db upgrade -c shop --app {app}`)\n"

    code, _, err = run(capsys, "downgrade", *opts, "--sql", "base")
    assert code == 1 and err.startswith("rhosocial-ar: error: MigrationError: connection 'shop': ")
    assert "<fromrev>:<torev>" in err


def test_hints_carry_app_and_directory(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = write_app(isolated)
    opts = ["--app", app, "--directory", "db/migrations"]
    assert run(capsys, "revision", "--all", "-m", "first", "--autogenerate", *opts)[0] == 0
    # the databases are not at the new heads: the second autogenerate fails with a hint to copy
    code, out, err = run(capsys, "revision", "--all", "-m", "second", "--autogenerate", *opts)
    assert code == 1
    assert err.endswith("run `rhosocial-ar db upgrade -c shop --app shopapp --directory "
                        "db/migrations` before you autogenerate a revision\n")
    hint = err.split("`")[1].split()
    assert main(hint[1:]) == 0                   # the hint, run as printed
    assert "shop: now at" in capsys.readouterr().out


def test_postgres_scheme_gets_a_hint(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (isolated / "shopapp_pg.py").write_text(
        "from rhosocial_ar import ConnectionManager\n"
        "ConnectionManager.configure('shop', {'url': 'postgres://root@127.0.0.1/x'})\n")
    hint = "SQLAlchemy spells the scheme postgresql:// (postgresql+psycopg2://), not postgres://"
    code, _, err = run(capsys, "current", "-c", "shop", "--app", "shopapp_pg")
    assert code == 1 and err.rstrip().endswith(hint) and len(err.splitlines()) == 1
    assert main(["demo", "--dir", str(isolated), "--sales-url", "postgres://root@127.0.0.1/x"]) == 1
    err = capsys.readouterr().err
    assert "connection 'sales'" in err and err.rstrip().endswith(hint)


def test_a_missing_driver_names_its_extra(isolated: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymysql", None)    # as if the [mysql] extra were missing
    code = main(["demo", "--dir", str(isolated), "--sales-url", "mysql+pymysql://root@127.0.0.1/x"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.rstrip().endswith("the driver is an extra: pip install 'rhosocial_ar[mysql]' "
                                 "(or rhosocial_ar[all])")


PACKAGE_MODELS = '''
from rhosocial_ar import ActiveRecord, Field


class Product(ActiveRecord):
    __table_name__ = "products"
    __connection__ = "shop"
    id: int | None = None
    title: str = Field(max_length=80)
'''
PACKAGE_SETTINGS = '''
import os

from rhosocial_ar import ConnectionManager

from shopapp_site import models  # noqa: F401  (the app imports its own package)
from shopapp_site.models import Product

ConnectionManager.configure({{"shop": {{"url": {url!r}}}}})
assert Product.__connection__ == "shop"
'''


@pytest.mark.parametrize("where", ["project", "elsewhere"])
def test_app_file_that_imports_its_own_package(isolated: Path, where: str) -> None:
    project = isolated / "project"
    package = project / "shopapp_site"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(PACKAGE_MODELS)
    (package / "settings.py").write_text(
        PACKAGE_SETTINGS.format(url=f"sqlite:///{project / 'shop.db'}"))
    cwd = project if where == "project" else isolated
    app = "shopapp_site/settings.py" if where == "project" else str(package / "settings.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "rhosocial_ar", "db", "revision", "--all", "-m", "first",
         "--autogenerate", "--app", app, "--directory", str(project / "migrations")],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("shop: wrote ")


def test_app_file_hidden_by_a_module(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (isolated / "json.py").write_text("raise SystemExit('not this one')\n")
    code, _, err = run(capsys, "current", "--all", "--app", "json.py")
    assert code == 1
    assert err.startswith("rhosocial-ar: error: app file json.py is hidden by the module 'json' at ")
    assert err.rstrip().endswith("rename the file")
