"""Tenants (tenants.py): a database per tenant on SQLite and on both servers, a schema per
tenant on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from typing import Any

import pytest
import sqlalchemy as sa

from rhosocial_ar import (
    ConfigurationError,
    ConnectionManager,
    ConnectionNotFound,
    IntegerPKMixin,
    QueryError,
    TenantModel,
    UnknownTenant,
    register_tenant_schemas,
    register_tenants,
    request_scope,
    tenant,
)
from rhosocial_ar.tenants import open_tenants
from tests.conftest import SERVER_URLS, require_backend


class Project(IntegerPKMixin, TenantModel):
    __table_name__ = "tenant_projects"
    name: str


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    ConnectionManager.reset()
    yield
    register_tenants(lambda _: None)      # closes the tenants' connections of the test
    ConnectionManager.reset()


@pytest.fixture(params=["sqlite", "servers"])
def databases(request: pytest.FixtureRequest, tmp_path: Any) -> dict[str, str]:
    """Three tenants' databases: SQLite files, or PostgreSQL and MariaDB databases (mixed)."""
    if request.param == "sqlite":
        return {t: f"sqlite:///{tmp_path / t}.db" for t in ("acme", "globex", "initech")}
    require_backend("postgresql")
    require_backend("mysql")
    return {"acme": SERVER_URLS["postgresql"][0], "globex": SERVER_URLS["mysql"][1],
            "initech": SERVER_URLS["postgresql"][1]}


def fresh_tables(tenants: Any) -> None:
    for tenant_id in tenants:
        with tenant(tenant_id):
            Project.drop_table()
            Project.create_table()


def test_each_tenant_reads_and_writes_its_own_database(databases: dict[str, str]) -> None:
    register_tenants(databases.get)
    fresh_tables(databases)
    for tenant_id in databases:
        with tenant(tenant_id):
            Project.create(name=f"{tenant_id}-1")
            Project.create(name=f"{tenant_id}-2")
    with tenant("globex"):
        assert Project.order_by("name").pluck("name") == ["globex-1", "globex-2"]
        record = Project.find_by(name="globex-1")
        assert record is not None
        record.name = "globex-one"
        record.save()
        with tenant("acme"):                     # nested: the inner tenant
            assert Project.count() == 2 and Project.where(name="globex-one").count() == 0
        assert Project.where(name="globex-one").count() == 1
    engine = sa.create_engine(databases["initech"])   # really in initech's database
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.select(Project.c.name)).scalars()) == ["initech-1", "initech-2"]
    engine.dispose()


def test_a_record_never_writes_into_another_tenants_database(tmp_path: Any) -> None:
    register_tenants(lambda t: f"sqlite:///{tmp_path / t}.db")
    fresh_tables(["acme", "globex"])
    with tenant("acme"):
        record = Project.create(name="acme's")
    with tenant("globex"):
        Project.create(name="globex's")                  # the same id, 1, in globex
        record.name = "changed"
        with pytest.raises(QueryError, match="belongs to tenant 'acme'.*nothing was written"):
            record.save()
        with pytest.raises(QueryError, match="belongs to tenant 'acme'"):
            record.delete()
        assert Project.pluck("name") == ["globex's"]
    with tenant("acme"):
        record.save()                                    # in its own tenant's block: fine
        assert Project.pluck("name") == ["changed"]


def test_unknown_tenants_and_work_outside_a_tenant_fail_before_any_statement(tmp_path: Any) -> None:
    register_tenants(lambda t: f"sqlite:///{tmp_path / t}.db" if t == "acme" else None)
    with pytest.raises(UnknownTenant, match="unknown tenant 'nope'"), tenant("nope"):
        raise AssertionError("the block must not run")
    assert isinstance(UnknownTenant("x"), ConnectionNotFound)
    assert ConnectionManager.names() == []
    with pytest.raises(ConnectionNotFound, match=r"with tenant\(tenant_id\)"):
        Project.count()
    with pytest.raises(ConfigurationError, match="non-empty string"), tenant(""):
        pass


def test_at_most_max_open_tenants_keep_an_engine(tmp_path: Any) -> None:
    made: list[str] = []

    def resolve(tenant_id: str) -> str:
        made.append(tenant_id)
        return f"sqlite:///{tmp_path / tenant_id}.db"

    register_tenants(resolve, max_open=3)
    engines = []
    for i in range(200):
        with tenant(f"t{i}"):
            Project.create_table()
            Project.create(name=str(i))
            engines.append(ConnectionManager.get(f"tenant:t{i}").engine)
        assert len(open_tenants()) <= 3
    assert open_tenants() == ["t197", "t198", "t199"]
    assert [n for n in ConnectionManager.names() if n.startswith("tenant:")] == [
        "tenant:t197", "tenant:t198", "tenant:t199"]
    assert engines[0].pool.checkedin() == 0       # disposed: no pooled connection left
    with tenant("t0"):                            # made again, lazily, with its data
        assert Project.pluck("name") == ["0"]
    assert made.count("t0") == 2 and open_tenants() == ["t198", "t199", "t0"]


def test_a_tenant_in_use_is_not_disposed(tmp_path: Any) -> None:
    register_tenants(lambda t: f"sqlite:///{tmp_path / t}.db", max_open=1)
    with tenant("a"):
        Project.create_table()
        with tenant("b"):
            Project.create_table()
            with tenant("c"):
                Project.create_table()
                assert open_tenants() == ["a", "b", "c"]      # all in use: kept
            Project.create(name="b")
        Project.create(name="a")
        assert Project.pluck("name") == ["a"]
    assert open_tenants() == ["a"]


def test_threads_work_for_different_tenants_at_once(tmp_path: Any) -> None:
    register_tenants(lambda t: f"sqlite:///{tmp_path / t}.db", max_open=8)
    tenants = [f"t{i}" for i in range(4)]
    fresh_tables(tenants)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(tenants))

    def work(tenant_id: str) -> None:
        try:
            with tenant(tenant_id):
                barrier.wait()
                for i in range(20):
                    Project.create(name=f"{tenant_id}-{i}")
                assert {n.split("-")[0] for n in Project.pluck("name")} == {tenant_id}
        except BaseException as exc:   # handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in tenants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_a_tenant_block_in_a_request_scope_is_seen_by_every_copy(tmp_path: Any) -> None:
    """As a web framework runs a `def` dependency's setup, the endpoint and the teardown in
    three copies of the request's context (RequestScopeMiddleware's request_scope())."""
    register_tenants(lambda t: f"sqlite:///{tmp_path / t}.db")
    fresh_tables(["acme", "globex"])
    with tenant("acme"):
        Project.create(name="a")
    with request_scope(), ThreadPoolExecutor(2) as pool:
        block = tenant("acme")
        pool.submit(copy_context().run, block.__enter__).result()     # the dependency's setup
        assert pool.submit(copy_context().run, Project.pluck, "name").result() == ["a"]
        pool.submit(copy_context().run, block.__exit__, None, None, None).result()
        with pytest.raises(ConnectionNotFound, match="no tenant chosen"):
            Project.count()
    assert open_tenants() == ["globex", "acme"]


def test_a_schema_per_tenant_on_one_engine() -> None:
    require_backend("postgresql")
    ConnectionManager.configure("main", {"url": SERVER_URLS["postgresql"][0]})
    engine = ConnectionManager.get("main").engine
    with engine.begin() as conn:
        for schema in ("tenant_acme", "tenant_globex"):
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    register_tenant_schemas("main", schema=lambda t: f"tenant_{t}", known={"acme", "globex"})
    fresh_tables(["acme", "globex"])
    with tenant("acme"):
        Project.create(name="a")
        assert ConnectionManager.get("tenant:acme").engine.pool is engine.pool   # one pool
    with tenant("globex"):
        Project.create(name="g1")
        Project.create(name="g2")
        assert Project.order_by("name").pluck("name") == ["g1", "g2"]
    with tenant("acme"):
        assert Project.pluck("name") == ["a"]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM tenant_globex.tenant_projects").scalar() == 2
        assert conn.exec_driver_sql("SELECT name FROM tenant_acme.tenant_projects").scalar() == "a"
    with pytest.raises(UnknownTenant), tenant("initech"):
        pass
    with engine.begin() as conn:
        for schema in ("tenant_acme", "tenant_globex"):
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
