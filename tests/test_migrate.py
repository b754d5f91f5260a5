"""Migrations per connection (rhosocial_ar.migrate) on SQLite, PostgreSQL and MariaDB.

Each test has a model registry of its own (a model "changes" by starting a
new registry and declaring it again) and works in a temporary directory, so
``migrations/`` is created there.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from rhosocial_ar import (
    ActiveRecord,
    ConnectionManager,
    ConnectionNotFound,
    Field,
    MigrationError,
    ReadOnlyError,
    migrate,
    registry,
)

from .conftest import Backend


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A registry of this test's own, no connections before or after, cwd = tmp_path."""
    monkeypatch.setattr(registry, "_metadata", {})
    monkeypatch.setattr(registry, "_by_name", defaultdict(list))   # models by name for relations
    monkeypatch.setattr(registry, "_by_table", defaultdict(list))
    monkeypatch.chdir(tmp_path)
    ConnectionManager.reset()
    yield tmp_path
    ConnectionManager.reset()


def new_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the models declared so far (as a new process with edited models would)."""
    monkeypatch.setattr(registry, "_metadata", {})


def declare_user(version: int, connection: str = "default") -> type[ActiveRecord]:
    """``users``; version 2 adds an indexed ``email`` and a unique ``handle``."""
    if version == 1:
        class User(ActiveRecord):
            __table_name__ = "users"
            __connection__ = connection
            id: int | None = None
            name: str = Field(max_length=40)
        return User

    class UserV2(ActiveRecord):
        __table_name__ = "users"
        __connection__ = connection
        id: int | None = None
        name: str = Field(max_length=40)
        email: str | None = Field(None, max_length=80, index=True)
        handle: str | None = Field(None, max_length=20, unique=True)
    return UserV2


def declare(name: str, table: str, connection: str) -> type[ActiveRecord]:
    """A small model ``name`` over ``table`` on ``connection``."""
    return type(name, (ActiveRecord,), {
        "__module__": __name__, "__table_name__": table, "__connection__": connection,
        "__annotations__": {"id": "int | None", "label": "str"},
        "id": None, "label": Field(max_length=30),
    })


def inspect(url: str) -> dict[str, set[str]]:
    """Table name -> column names, as the database has them."""
    engine = sa.create_engine(url)
    try:
        insp = sa.inspect(engine)
        return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}
    finally:
        engine.dispose()


def upgrade_part(path: Path) -> str:
    text = path.read_text()
    return text[text.index("def upgrade"):text.index("def downgrade")]


# -- one connection: upgrade, drift, downgrade --------------------------------

def test_upgrade_drift_and_downgrade(backend: Backend, isolated: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ConnectionManager.configure("default", backend.config(0))
    url = backend.urls[0]
    declare_user(1)
    first = migrate.revision("default", "create users", autogenerate=True)
    assert first is not None and first.parent == isolated / "migrations" / "default" / "versions"
    assert (isolated / "migrations" / "env.py").is_file()
    assert migrate.current("default") == ()
    assert migrate.check("default") == [
        f"the database is at <base>, the migrations' head is {first.name[:12]}: run upgrade"]
    (rev1,) = migrate.upgrade("default")
    assert first.name.startswith(rev1)
    assert set(inspect(url)) == {"users", "alembic_version_default"}
    assert migrate.check("default") == []
    assert migrate.revision("default", "nothing to do", autogenerate=True) is None
    assert len(list(first.parent.glob("*.py"))) == 1

    # the model gains two columns: check fails, a new revision makes it pass
    new_registry(monkeypatch)
    user = declare_user(2)
    drift = migrate.check("default")
    assert any(line.startswith("add column users.email VARCHAR(80)") for line in drift), drift
    assert any(line.startswith("add column users.handle") for line in drift), drift
    assert "add index ix_users_email on users(email)" in drift
    assert any("uq_users_handle" in line for line in drift), drift
    second = migrate.revision("default", "user email", autogenerate=True)
    assert second is not None
    (rev2,) = migrate.upgrade("default")
    assert migrate.check("default") == []
    assert {"email", "handle"} <= inspect(url)["users"]
    user.create(name="ann", email="ann@example.com", handle="ann")
    assert [(r.revision, r.is_head) for r in migrate.history("default")] == [
        (rev2, True), (rev1, False)]

    # downgrade one step: the columns go, and the models differ from the database again
    assert migrate.downgrade("default", "-1") == (rev1,)
    assert "email" not in inspect(url)["users"]
    assert migrate.check("default") != []
    assert "users" in inspect(url)
    assert migrate.downgrade("default", "base") == ()
    assert set(inspect(url)) == {"alembic_version_default"}
    assert migrate.upgrade("default") == (rev2,)   # and all the way up again
    assert migrate.check("default") == []


# -- two connections ------------------------------------------------------------

def test_two_connections_share_one_database(backend: Backend) -> None:
    url = backend.urls[0]
    ConnectionManager.configure({"shop": {"url": url}, "audit": {"url": url}})
    declare("Customer", "customers", "shop")
    declare("Entry", "audit_entries", "audit")
    shop = migrate.revision("shop", "customers", autogenerate=True)
    migrate.upgrade("shop")
    audit = migrate.revision("audit", "audit entries", autogenerate=True)
    assert shop is not None and audit is not None
    # each chain holds its own tables only, and proposes to drop nothing of the other
    assert "customers" in upgrade_part(shop) and "audit_entries" not in shop.read_text()
    assert "audit_entries" in upgrade_part(audit)
    assert "customers" not in audit.read_text() and "drop" not in upgrade_part(audit)
    assert "alembic_version" not in audit.read_text()
    migrate.upgrade("audit")
    assert set(inspect(url)) == {"customers", "audit_entries",
                                 "alembic_version_shop", "alembic_version_audit"}
    assert migrate.check("shop") == [] and migrate.check("audit") == []
    engine = sa.create_engine(url)     # a table the library keeps itself: no model's, kept
    sa.Table("rhosocial_ar_2pc_log", sa.MetaData(), sa.Column("gtrid", sa.String(64),
                                                              primary_key=True)).create(engine)
    engine.dispose()
    assert migrate.check("shop") == [] and migrate.check("audit") == []
    assert migrate.current("shop") != migrate.current("audit")
    migrate.downgrade("audit", "base")
    assert set(inspect(url)) == {"customers", "alembic_version_shop", "alembic_version_audit",
                                 "rhosocial_ar_2pc_log"}
    assert migrate.check("shop") == []


def test_connection_added_later(backend: Backend, isolated: Path) -> None:
    ConnectionManager.configure("default", backend.config(0))
    declare("Order", "orders", "default")
    migrate.revision("default", "orders", autogenerate=True)
    (rev1,) = migrate.upgrade("default")
    pending = migrate.revision("default", "by hand, not applied yet")
    assert pending is not None
    before = {p.name: p.read_bytes() for p in (isolated / "migrations").rglob("*.py")}

    ConnectionManager.configure("reports", backend.config(1))
    declare("Report", "reports", "reports")
    assert migrate.all_names() == ["default"]
    assert migrate.all_names(with_models=True) == ["default", "reports"]
    added = migrate.revision("reports", "reports", autogenerate=True)
    assert added is not None and added.parent.parent.name == "reports"
    after = {p.name: p.read_bytes() for p in (isolated / "migrations").rglob("*.py")}
    assert after == {**before, added.name: added.read_bytes()}   # nothing else touched
    migrate.upgrade("reports")
    assert migrate.current("default") == (rev1,)   # the pending 'default' revision did not run
    assert "reports" in inspect(backend.urls[1]) and "reports" not in inspect(backend.urls[0])

    heads = migrate.upgrade_all()
    assert heads == {"default": (pending.name[:12],), "reports": migrate.current("reports")}
    assert migrate.check_all() == {"default": [], "reports": []}
    assert migrate.current_all() == heads
    assert migrate.downgrade_all("base") == {"default": (), "reports": ()}


# -- adopting an existing single-database Alembic setup --------------------------

def test_existing_alembic_setup_becomes_one_chain(backend: Backend, isolated: Path) -> None:
    url = backend.urls[0]
    # a plain Alembic project: alembic.ini, alembic/env.py, one revision, applied
    legacy = Config(str(isolated / "alembic.ini"))
    command.init(legacy, str(isolated / "alembic"))
    env = isolated / "alembic" / "env.py"      # keep the logging of this test process as it is
    env.write_text(env.read_text().replace("fileConfig(config.config_file_name)", "pass"))
    legacy.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    script = command.revision(legacy, "create users", rev_id="0001legacy")
    path = Path(script.path)  # type: ignore[union-attr]
    path.write_text(path.read_text().replace(
        '    """Upgrade schema."""\n    pass',
        '    op.create_table("users", sa.Column("id", sa.Integer, primary_key=True),\n'
        '                    sa.Column("name", sa.String(40), nullable=False))'))
    command.upgrade(legacy, "head")
    assert set(inspect(url)) == {"users", "alembic_version"}

    # the steps of docs/migrations.md: init, move the revisions, rename the version table
    migrate.init()
    (isolated / "migrations" / "default").mkdir()
    shutil.move(isolated / "alembic" / "versions", isolated / "migrations" / "default" / "versions")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE alembic_version RENAME TO alembic_version_default")
    engine.dispose()

    ConnectionManager.configure("default", {"url": url})
    declare_user(1)
    assert migrate.current("default") == ("0001legacy",)
    assert migrate.check("default") == []
    declare("Tag", "tags", "default")
    nxt = migrate.revision("default", "tags", autogenerate=True)
    assert nxt is not None and "down_revision: str | Sequence[str] | None = '0001legacy'" \
        in nxt.read_text()
    migrate.upgrade("default")
    assert migrate.downgrade("default", "-1") == ("0001legacy",)


def test_stamp_adopts_a_database_without_running_migrations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    ConnectionManager.configure("default", {"url": url})
    declare_user(1)
    rev = migrate.revision("default", "users", autogenerate=True)
    assert rev is not None
    sa_engine = sa.create_engine(url)
    registry.tables_by_connection()["default"].create_all(sa_engine)   # made some other way
    sa_engine.dispose()
    # upgrading would create it again: the database's error, naming the connection
    with pytest.raises(MigrationError, match="connection 'default': OperationalError: table "
                       "users already exists") as failed:
        migrate.upgrade("default")
    assert isinstance(failed.value.__cause__, sa.exc.OperationalError)
    assert migrate.stamp("default", "head") == (rev.name[:12],)
    assert migrate.check("default") == []


# -- errors ---------------------------------------------------------------------

def test_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    ConnectionManager.configure({"default": {"url": url},
                                 "replica": {"url": url, "read_only": True}})
    declare_user(1)
    with pytest.raises(ConnectionNotFound, match="no connection named 'nope'"):
        migrate.revision("nope", "x")
    with pytest.raises(MigrationError, match="no migrations yet for connection 'default'"):
        migrate.upgrade("default")
    with pytest.raises(MigrationError, match="no migrations yet"):
        migrate.check("default")
    with pytest.raises(MigrationError, match="no connection has migrations yet"):
        migrate.upgrade_all()
    assert migrate.check_all()["default"][0].startswith("no migrations yet")
    assert not (tmp_path / "migrations" / "default").exists()   # nothing left behind

    migrate.revision("default", "users", autogenerate=True)
    migrate.revision("default", "more by hand")
    with pytest.raises(MigrationError, match="run `rhosocial-ar db upgrade -c default` before"):
        migrate.revision("default", "x", autogenerate=True)
    with pytest.raises(MigrationError, match="connection 'default': Can't locate revision"):
        migrate.upgrade("default", "nosuchrev")
    with pytest.raises(ReadOnlyError, match="'replica' is read-only"):
        migrate.upgrade("replica")
    with pytest.raises(MigrationError, match="cannot name a migrations directory"):
        migrate.versions_dir("../etc")
    assert migrate.version_table("Sales-EU") == "alembic_version_sales_eu"


def test_describe() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("a", sa.Integer), sa.Column("b", sa.String(9)))
    index = sa.Index("ix_t_a", table.c.a)
    assert migrate.describe(("add_table", table)) == "add table t"
    assert migrate.describe(("remove_column", None, "t", table.c.b)) == "remove column t.b VARCHAR(9)"
    assert migrate.describe(("add_index", index)) == "add index ix_t_a on t(a)"
    assert migrate.describe([("modify_nullable", None, "t", "a", {}, True, False)]) \
        == "change nullable of t.a: True -> False"
    assert migrate.describe([("modify_type", None, "t", "b", {}, sa.String(9), sa.Text())]) \
        == "change type of t.b: VARCHAR(9) -> TEXT"


# -- the project's own migrations -------------------------------------------------

def test_the_demo_environment_is_the_template() -> None:
    """The demo's ``migrations/`` (package data) is what ``rhosocial-ar db init`` writes."""
    from rhosocial_ar.demo import packaged

    for name in migrate.TEMPLATE_FILES:
        assert (packaged("migrations") / name).read_text() == (migrate.TEMPLATE / name).read_text()


def test_demo_migrations_match_the_demo_models(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    from rhosocial_ar.demo import packaged
    from rhosocial_ar.demo.models import ALL_MODELS

    tables: dict[str, Any] = {m.__connection__: m.__table__.metadata for m in ALL_MODELS}
    monkeypatch.setattr(registry, "_metadata", tables)
    ConnectionManager.configure({name: {"url": f"sqlite:///{tmp_path / name}.db"}
                                 for name in ("catalog", "sales")})
    directory = packaged("migrations")
    assert migrate.all_names(directory) == ["catalog", "sales"]
    migrate.upgrade_all(directory=directory)
    assert migrate.check_all(directory) == {"catalog": [], "sales": []}
    assert [r.message.split(":")[0] for r in migrate.history("sales", directory)] == [
        "per-artist sales summary", "sales tables"]
