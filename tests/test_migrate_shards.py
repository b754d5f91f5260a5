"""One chain on many databases (migrate_many.py, cli_db_many.py): every shard of a shard group,
every tenant. On SQLite files and on the PostgreSQL and MariaDB servers (mixed backends as
shards), with a shard or a tenant that fails, and a rerun once it is fixed."""

from __future__ import annotations

import io
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from rhosocial_ar import (
    ConnectionManager,
    MigrationError,
    migrate,
    migrate_many,
    register_tenant_schemas,
    register_tenants,
    registry,
    tenants,
)
from rhosocial_ar.cli import APP_VARIABLE, main
from tests.conftest import SERVER_URLS, _wipe, require_backend

SHARDS = ["s0", "s1", "s2"]
SCHEMAS = ["msh_acme", "msh_globex"]

APP = '''
from rhosocial_ar import ActiveRecord, ConnectionManager, IntegerPKMixin

ConnectionManager.configure({urls!r})


class MshOrder(IntegerPKMixin, ActiveRecord):
    __table_name__ = "msh_orders"
    __shards__ = {shards!r}
    __shard_key__ = "customer_id"
    __shard_group__ = "billing"
    customer_id: int
    total: int
{extra}

class MshNote(IntegerPKMixin, ActiveRecord):     # s0's own model, in s0's own chain
    __table_name__ = "msh_notes"
    __connection__ = "s0"
    text: str
'''
NOTE = "    note: str | None = None\n"

TENANT_APP = '''
from rhosocial_ar import IntegerPKMixin, TenantModel


class MshProject(IntegerPKMixin, TenantModel):
    __table_name__ = "msh_projects"
    name: str
{extra}'''
DONE = "    done: bool = False\n"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """cwd = tmp_path and a registry of the test's own: only its models are in any chain."""
    monkeypatch.setattr(registry, "_metadata", {})
    monkeypatch.setattr(registry, "_by_name", defaultdict(list))
    monkeypatch.setattr(registry, "_by_table", defaultdict(list))
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    register_tenants(lambda _: None)      # closes an earlier test's tenants
    tenants._registry = None              # none registered yet
    monkeypatch.delenv(APP_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    ConnectionManager.reset()
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("mshapp")]:
        del sys.modules[name]
    register_tenants(lambda _: None)      # closes the tenants' connections
    ConnectionManager.reset()


def server_urls() -> dict[str, str]:
    """Mixed backends as shards: PostgreSQL, MariaDB, PostgreSQL (databases on the servers)."""
    require_backend("postgresql")
    require_backend("mysql")
    return {"s0": SERVER_URLS["postgresql"][0], "s1": SERVER_URLS["mysql"][1],
            "s2": SERVER_URLS["postgresql"][1]}


def clear(urls: list[str]) -> None:
    """Empty server databases (autogenerate proposes dropping any table no model maps)."""
    for url in urls:
        if url.startswith("sqlite"):
            continue
        engine = sa.create_engine(url)
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                for schema in SCHEMAS:
                    conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()
        _wipe(url)


@pytest.fixture(params=["sqlite", "servers"])
def urls(request: pytest.FixtureRequest, isolated: Path) -> Iterator[dict[str, str]]:
    found = ({s: f"sqlite:///{isolated / s}.db" for s in SHARDS} if request.param == "sqlite"
             else server_urls())
    clear(list(found.values()))
    yield found
    ConnectionManager.reset()
    clear(list(found.values()))


def write_app(directory: Path, urls: dict[str, str], extra: str = "") -> str:
    (directory / "mshapp.py").write_text(APP.format(urls={s: {"url": u} for s, u in urls.items()},
                                                    shards=SHARDS, extra=extra))
    return "mshapp"


def reload_app(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """What a new process would see: the app imported afresh into an empty registry."""
    del sys.modules[name]
    monkeypatch.setattr(registry, "_metadata", {})
    monkeypatch.setattr(registry, "_by_name", defaultdict(list))


def db(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["db", *args])
    out, err = capsys.readouterr()
    return code, out, err


def tables(url: str, schema: str | None = None) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names(schema=schema))
    finally:
        engine.dispose()


def execute(url: str, statement: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(statement))
    engine.dispose()


# -- shards -------------------------------------------------------------------------------------


def test_a_chain_of_two_revisions_on_every_shard(urls: dict[str, str], isolated: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    app = write_app(isolated, urls)
    code, out, err = db(capsys, "revision", "--shards", "MshOrder", "-m", "orders", "--autogenerate",
                        "--app", app)
    assert (code, err) == (0, "")
    assert out.startswith("shards billing: wrote migrations/shards/billing/versions/")
    first = next((isolated / "migrations/shards/billing/versions").glob("*_orders.py")).read_text()
    assert "msh_orders" in first and "msh_notes" not in first     # s0's own table: not the group's
    code, _, err = db(capsys, "upgrade", "--all", "--app", app)      # --all: connections only
    assert code == 1 and err.endswith("(looked in migrations); shard groups and tenants have chains "
                                      "of their own: --shards MODEL_OR_GROUP\n")
    # s0's own chain leaves the shard group's table alone, and the reverse
    assert db(capsys, "revision", "-c", "s0", "-m", "notes", "--autogenerate", "--app", app)[0] == 0
    own = next((isolated / "migrations/s0/versions").glob("*_notes.py")).read_text()
    assert "msh_notes" in own and "msh_orders" not in own

    code, out, err = db(capsys, "upgrade", "--shards", "billing", "--app", app)   # the group's name
    assert (code, err) == (0, ""), out + err
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["s0", "s0", "s1", "s1", "s2", "s2"]
    assert "Running upgrade  -> " in lines[0] and lines[1].startswith("s0: now at ")
    for url in urls.values():
        assert {"msh_orders", "alembic_version_shards_billing"} <= tables(url)
        assert "msh_notes" not in tables(url)                       # s0's chain did not run
    assert migrate.upgrade("s0") and "msh_notes" in tables(urls["s0"])
    assert migrate.all_names() == ["s0"]          # --all: connections' chains, not the group's

    # a second revision: a new column, autogenerated against the first shard, on every shard
    write_app(isolated, urls, extra=NOTE)
    reload_app(monkeypatch, app)
    code, out, _ = db(capsys, "revision", "--shards", "MshOrder", "-m", "note", "--autogenerate",
                      "--app", app)
    assert code == 0 and out.startswith("shards billing: wrote ")
    code, out, err = db(capsys, "check", "--shards", "MshOrder", "--app", app)
    assert code == 1 and out.count("run upgrade") == 3
    assert err == "rhosocial-ar: error: models and database differ on 's0', 's1', 's2' (listed above)\n"
    code, out, _ = db(capsys, "upgrade", "--shards", "MshOrder", "--app", app)
    assert code == 0 and out.count("Running upgrade ") == 3
    assert migrate_many.check_shards("MshOrder") == {"s0": [], "s1": [], "s2": []}
    report = migrate_many.current_shards("billing")
    heads = migrate_many.heads_shards("billing")
    assert report.ok and {o.after for o in report.results.values()} == {heads}
    for url in urls.values():
        engine = sa.create_engine(url)
        assert "note" in {c["name"] for c in sa.inspect(engine).get_columns("msh_orders")}
        engine.dispose()
    code, out, _ = db(capsys, "upgrade", "--shards", "MshOrder", "--app", app)     # rerun: nothing
    assert code == 0 and out.count("already at") == 3 and "Running" not in out
    code, out, _ = db(capsys, "history", "--shards", "MshOrder", "--app", app)
    assert out.splitlines()[0] == "shards billing:" and out.count(" -> ") == 2

    # and back down on every shard, from Python
    down = migrate_many.downgrade_shards("MshOrder", "base")
    assert down.ok and all(o.after == () for o in down.results.values())
    assert all("msh_orders" not in tables(url) for url in urls.values())


def test_a_failing_shard_stops_the_run_and_a_rerun_finishes(urls: dict[str, str], isolated: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    app = write_app(isolated, urls, extra=NOTE)
    assert db(capsys, "revision", "--shards", "MshOrder", "-m", "orders", "--autogenerate",
              "--app", app)[0] == 0
    execute(urls["s1"], "CREATE TABLE msh_orders (x INTEGER)")      # in the way on s1

    code, out, err = db(capsys, "upgrade", "--shards", "MshOrder", "--app", app)
    assert code == 1
    lines = out.splitlines()
    assert lines[1].startswith("s0: now at ") and lines[2].startswith("s1: Running upgrade")
    assert lines[3].startswith("s1: failed: MigrationError: connection 's1': ")
    assert "msh_orders" in lines[3] and lines[4:] == ["s2: not run"]
    assert err.startswith("rhosocial-ar: error: shard group 'billing': shard 's1' failed (the later "
                          "shards were not touched); run the command again")
    assert len(err.splitlines()) == 1
    assert not tables(urls["s2"]) & {"msh_orders", "alembic_version_shards_billing"}   # untouched

    execute(urls["s1"], "DROP TABLE msh_orders")                    # fixed
    code, out, _ = db(capsys, "upgrade", "--shards", "MshOrder", "--app", app)
    assert code == 0
    assert out.splitlines()[0].startswith("s0: already at ")
    assert "s1: now at" in out and "s2: now at" in out


@pytest.mark.parametrize("away", ["sqlite:///{tmp}/no/such/dir/s1.db",
                                  "postgresql+psycopg2://root@127.0.0.1:1/nowhere"])
def test_an_unreachable_shard(isolated: Path, away: str) -> None:
    urls = {s: f"sqlite:///{isolated / s}.db" for s in SHARDS}
    __import__(write_app(isolated, urls))
    assert migrate_many.revision_shards("MshOrder", "orders", autogenerate=True) is not None
    ConnectionManager.configure("s1", {"url": away.format(tmp=isolated)})
    seen: list[str] = []
    report = migrate_many.upgrade_shards("MshOrder", on_start=seen.append)
    assert seen == ["s0", "s1"] and not report.ok and report.not_run == ["s2"]
    assert list(report.failed) == ["s1"] and report.results["s0"].changed
    with pytest.raises(MigrationError, match=r"shard group 'billing': 1 of 3 failed: 's1': .*not run: 's2'"):
        report.raise_if_failed()
    assert not (isolated / "s2.db").exists()                        # never opened
    ConnectionManager.configure("s1", {"url": urls["s1"]})
    again = migrate_many.upgrade_shards("MshOrder")
    assert again.ok and [o.changed for o in again.results.values()] == [False, True, True]


@pytest.mark.parametrize(("args", "message"), [
    (["upgrade", "--shards", "Nope"],
     "MigrationError: no sharded model or shard group named 'Nope'; shard groups: billing"),
    (["upgrade", "--shards", "MshNote"],
     "MigrationError: MshNote is not sharded (no __shards__): migrate its connection with "
     "`rhosocial-ar db upgrade -c s0 --app mshapp`"),
    (["upgrade", "--shards", "billing"],
     "MigrationError: no migrations yet for shard group 'billing' in migrations/shards/billing/versions; "
     "create the first with `rhosocial-ar db revision --shards billing --autogenerate -m MESSAGE "
     "--app mshapp`"),
    (["upgrade", "--tenants"],
     "MigrationError: db --tenants: no tenants registered; call register_tenants() or "
     "register_tenant_schemas() first"),
    (["upgrade", "--shards", "billing", "--sql"],
     "--sql prints one connection's script: give -c NAME (a shard, say); every shard "
     "of a group runs the same revisions"),
])
def test_bad_input_is_one_line_and_writes_nothing(isolated: Path, capsys: pytest.CaptureFixture[str],
                                                  args: list[str], message: str) -> None:
    app = write_app(isolated, {s: f"sqlite:///{isolated / s}.db" for s in SHARDS})
    code, out, err = db(capsys, *args, "--app", app)
    assert (code, out) == (1, "")
    assert err == f"rhosocial-ar: error: {message}\n"
    assert not any(isolated.glob("*.db")) and not (isolated / "migrations").exists()


def test_help_names_shards_and_tenants(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("revision", "upgrade", "downgrade", "stamp", "current", "check", "history", "heads"):
        with pytest.raises(SystemExit):
            main(["db", command, "--help"])
        text = capsys.readouterr().out
        assert "--shards MODEL_OR_GROUP" in text and "--tenants" in text and "--tenant ID" in text
    with pytest.raises(SystemExit) as done:
        main(["db", "upgrade", "--shards", "X", "-c", "s0"])
    assert done.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_shards_and_tenants_are_no_connection_names(isolated: Path) -> None:
    ConnectionManager.configure("tenants", {"url": f"sqlite:///{isolated}/t.db"})
    with pytest.raises(MigrationError, match="connection name 'tenants' cannot have migrations"):
        migrate.upgrade("tenants")
    with pytest.raises(MigrationError, match="'shards' cannot have migrations"):
        migrate.versions_dir("shards")


# -- tenants ------------------------------------------------------------------------------------


def test_the_tenants_must_be_listed(isolated: Path) -> None:
    register_tenants(lambda t: f"sqlite:///{isolated}/{t}.db")
    with pytest.raises(MigrationError, match=r"registered without a list of them: give "
                                             r"register_tenants\(\.\.\., tenants="):
        migrate_many.upgrade_tenants()
    register_tenants(lambda t: f"sqlite:///{isolated}/{t}.db", tenants=[])
    with pytest.raises(MigrationError, match="the tenant list is empty"):
        migrate_many.upgrade_tenants()
    register_tenants(lambda t: f"sqlite:///{isolated}/{t}.db", tenants=["acme"])
    with pytest.raises(MigrationError, match=r"no migrations yet for the tenants in "
                                             r"migrations/tenants/versions"):
        migrate_many.upgrade_tenants()
    assert not any(isolated.glob("*.db"))


def declare_tenant_models(isolated: Path, extra: str = "") -> None:
    (isolated / "mshapp_tenants.py").write_text(TENANT_APP.format(extra=extra))
    sys.modules.pop("mshapp_tenants", None)
    __import__("mshapp_tenants")


def test_a_database_per_tenant(isolated: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    require_backend("postgresql")
    pg = SERVER_URLS["postgresql"][1]
    clear([pg])
    (isolated / "gone").mkdir()
    found = {"acme": f"sqlite:///{isolated}/acme.db", "globex": pg,
             "initech": f"sqlite:///{isolated}/gone/initech.db"}
    listed = ["acme", "globex", "initech", "hooli"]                  # hooli: the resolver knows none
    register_tenants(found.get, tenants=lambda: listed, max_open=2)
    ConnectionManager.configure("default", {"url": f"sqlite:///{isolated}/main.db"})
    try:
        declare_tenant_models(isolated)
        assert migrate_many.revision_tenants("projects", autogenerate=True) is not None
        (isolated / "gone").rmdir()                                  # initech's server is away
        code, out, err = db(capsys, "upgrade", "--tenants", "--no-progress")
        assert code == 1
        assert out.splitlines()[0] == "tenants: 2 upgraded, 0 already there, 2 failed"
        assert out.splitlines()[1].startswith("  initech: MigrationError: connection 'tenant:initech'")
        assert out.splitlines()[2] == ("  hooli: UnknownTenant: unknown tenant 'hooli': the tenant "
                                       "resolver has no database for it; nothing was sent")
        assert err.startswith("rhosocial-ar: error: 2 of 4 tenants failed (listed above); run the "
                              "command again once fixed")
        assert {"msh_projects", "alembic_version_tenants"} <= tables(pg)

        (isolated / "gone").mkdir()                                  # fixed; hooli leaves the list
        listed.remove("hooli")
        report = migrate_many.upgrade_tenants(progress=False)
        assert report.ok and [o.changed for o in report.results.values()] == [False, False, True]
        assert "msh_projects" in tables(found["initech"])

        # a second revision on every tenant, autogenerated against the first listed one
        reload_app(monkeypatch, "mshapp_tenants")
        declare_tenant_models(isolated, extra=DONE)
        assert migrate_many.revision_tenants("done", autogenerate=True) is not None
        code, out, _ = db(capsys, "upgrade", "--tenants", "--tenant", "globex", "--no-progress")
        assert (code, out) == (0, "tenants: 1 upgraded, 0 already there, 0 failed\n")
        code, out, _ = db(capsys, "current", "--tenants")
        heads = migrate_many.heads_tenants()[0]
        assert out.splitlines() == [f"acme: {report.results['acme'].after[0]} (head is {heads})",  # type: ignore[index]
                                    f"globex: {heads} (head)",
                                    f"initech: {report.results['initech'].after[0]} (head is {heads})"]  # type: ignore[index]
        assert migrate_many.check_tenants(tenants=["acme"])["acme"][0].endswith("run upgrade")
        assert migrate_many.upgrade_tenants(progress=False).ok
        assert migrate_many.check_tenants() == {"acme": [], "globex": [], "initech": []}
        code, out, _ = db(capsys, "stamp", "--tenants", "base", "--no-progress")
        assert (code, out) == (0, "tenants: 3 stamped, 0 already there, 0 failed\n")
        assert "msh_projects" in tables(pg)                       # stamped: nothing ran
    finally:
        register_tenants(lambda _: None)
        clear([pg])


def test_a_progress_bar_on_a_terminal(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    register_tenants(lambda t: None if t == "gone" else f"sqlite:///{isolated}/{t}.db",
                     tenants=["a", "b", "gone"])
    declare_tenant_models(isolated)
    migrate_many.revision_tenants("projects", autogenerate=True)
    shown = Terminal()
    monkeypatch.setattr(sys, "stderr", shown)
    report = migrate_many.upgrade_tenants()
    assert list(report.failed) == ["gone"]
    assert "tenants: 100%" in shown.getvalue() and "3/3" in shown.getvalue()
    assert "failed=1" in shown.getvalue()
    monkeypatch.setattr(sys, "stderr", shown := Terminal())
    migrate_many.upgrade_tenants(progress=False)
    assert shown.getvalue() == ""


def test_a_schema_per_tenant(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_backend("postgresql")
    pg = SERVER_URLS["postgresql"][0]
    clear([pg])
    try:
        # the revision autogenerated with a database per tenant (SQLite), as in development
        register_tenants(lambda t: f"sqlite:///{isolated}/{t}.db", tenants=["dev"])
        declare_tenant_models(isolated)
        assert migrate_many.revision_tenants("projects", autogenerate=True) is not None

        ConnectionManager.configure("main", {"url": pg})
        register_tenant_schemas("main", schema=lambda t: f"msh_{t}", known=["acme", "globex"])
        with pytest.raises(MigrationError, match="^autogenerate compares .*with a schema per tenant, "
                                                 "write revisions without --autogenerate"):
            migrate_many.revision_tenants("more", autogenerate=True)
        with pytest.raises(MigrationError, match="^check compares with a tenant's database"):
            migrate_many.check_tenants()
        execute(pg, "CREATE SCHEMA msh_globex")
        execute(pg, "CREATE TABLE msh_globex.msh_projects (x INTEGER)")   # in globex's way
        report = migrate_many.upgrade_tenants(progress=False)
        assert list(report.failed) == ["globex"] and report.results["acme"].changed
        assert {"msh_projects", "alembic_version_tenants"} <= tables(pg, "msh_acme")
        assert not {"msh_projects", "alembic_version_tenants"} & tables(pg)   # nothing in public

        execute(pg, "DROP TABLE msh_globex.msh_projects")
        code, out, _ = db(capsys, "upgrade", "--tenants", "--no-progress")
        assert (code, out) == (0, "tenants: 1 upgraded, 1 already there, 0 failed\n")
        assert {"msh_projects", "alembic_version_tenants"} <= tables(pg, "msh_globex")
    finally:
        register_tenants(lambda _: None)
        ConnectionManager.reset()
        clear([pg])
