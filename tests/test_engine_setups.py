"""Engines the user builds and hands over: schema-per-tenant with ``schema_translate_map``.

    engine = sa.create_engine(url).execution_options(schema_translate_map={None: 'tenant_a'})
    ConnectionManager.configure({'default': {'engine': engine}})
    Item.create(name='x')          # lands in tenant_a.items, as Connection.execute would send it

Every operation must land in the translated schema and nothing in the default
one. The default schema holds the same tables with decoy rows (other names,
the same ids), so a read from the wrong schema returns wrong values and a
write there changes the decoys. PostgreSQL translates to a schema, MariaDB to
a separate database, SQLite to an ATTACHed file (attached in a pool ``connect``
listener, as a user would).

The other engine setups (listeners, sqlite3's PEP 249 mode, isolation levels,
the fast path off, a missing SQLAlchemy internal) are in the
``test_engine_setups_*.py`` files beside this one, which share the helpers here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from rhosocial_ar import (
    ActiveRecord,
    BelongsTo,
    ConnectionManager,
    Field,
    HasMany,
    IntegerPKMixin,
    Transaction,
    get_connection,
    recover,
    transfer,
    two_phase,
)
from rhosocial_ar.fastpath import internals
from tests.conftest import SERVER_URLS, Backend, make_tables, require_backend
from tests.test_twophase_crash import in_doubt


class TenantOwner(IntegerPKMixin, ActiveRecord):
    __table_name__ = "es_owners"
    id: int | None = None
    name: str = Field(max_length=40)
    items: ClassVar[HasMany[TenantItem]] = HasMany(foreign_key="owner_id", inverse_of="owner")


class TenantItem(IntegerPKMixin, ActiveRecord):
    __table_name__ = "es_items"
    id: int | None = None
    owner_id: int | None = None
    name: str = Field(max_length=40, unique=True)     # unique: the upserts' conflict key
    qty: int = 0
    owner: ClassVar[BelongsTo[TenantOwner]] = BelongsTo(foreign_key="owner_id", inverse_of="items")


class OtherItem(TenantItem):
    """The same table on the ``secondary`` connection (two-phase branches, transfers)."""

    __connection__ = "secondary"
    __table_name__ = "es_items"


# -- engines the way a user builds them -------------------------------------------------

# how the user spells the translation: on an engine copy, or when creating the engine
SPELLINGS = ["engine.execution_options", "create_engine"]

# rows seeded with SQLAlchemy Core (ids 1, 2, ... in this order)
TENANT_OWNERS = ["ann", "bob"]
TENANT_ITEMS = [("a1", 1, 1), ("a2", 1, 2), ("b1", 2, 3)]          # (name, owner_id, qty)
DECOY_OWNERS = ["zed", "yan"]
DECOY_ITEMS = [("z1", 1, 100), ("z2", 2, 200), ("z3", 2, 300)]


def _attach(path: str, schema: str) -> Callable[..., None]:
    """A pool ``connect`` listener that attaches ``path`` as ``schema`` (SQLite's schemas)."""

    def attach(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f'ATTACH DATABASE ? AS "{schema}"', (path,))
        cursor.close()

    return attach


@dataclass
class Site:
    """One database with a tenant schema in it (a schema, a database, or an attached file)."""

    backend: str
    url: str
    schema: str
    attach_path: str | None = None
    engines: list[sa.Engine] = field(default_factory=list)

    def _admin(self) -> sa.Engine:
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        self.engines.append(engine)
        return engine

    def create_schema(self) -> None:
        if self.backend == "sqlite":
            assert self.attach_path is not None
            if os.path.exists(self.attach_path):
                os.remove(self.attach_path)
            return
        self.drop_schema()
        with self._admin().connect() as conn:
            keyword = "SCHEMA" if self.backend == "postgresql" else "DATABASE"
            conn.exec_driver_sql(f"CREATE {keyword} {self.schema}")

    def drop_schema(self) -> None:
        if self.backend == "sqlite":
            return                       # the file goes with tmp_path
        with self._admin().connect() as conn:
            if self.backend == "postgresql":
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.schema}")

    def _base(self, **options: Any) -> sa.Engine:
        engine = sa.create_engine(self.url, **options)
        if self.attach_path is not None:
            sa.event.listen(engine, "connect", _attach(self.attach_path, self.schema))
        self.engines.append(engine)
        return engine

    def engine(self, spelling: str = SPELLINGS[0], **options: Any) -> sa.Engine:
        """An engine whose unqualified tables are the tenant schema's."""
        translate = {"schema_translate_map": {None: self.schema}}
        if spelling == "create_engine":
            return self._base(execution_options=translate, **options)
        return self._base(**options).execution_options(**translate)

    def plain(self) -> sa.Engine:
        """An engine without the translation, to look at both schemas."""
        return self._base()

    def items(self, schema: str | None) -> list[tuple[Any, ...]]:
        """(name, owner_id, qty) of every item in ``schema`` (None: the default one), by id."""
        table = sa.table("es_items", sa.column("id"), sa.column("name"), sa.column("owner_id"),
                         sa.column("qty"), schema=schema)
        with self.plain().connect() as conn:
            rows = conn.execute(sa.select(table.c.name, table.c.owner_id, table.c.qty)
                                .order_by(table.c.id)).all()
        return [tuple(row) for row in rows]

    def owners(self, schema: str | None) -> list[str]:
        table = sa.table("es_owners", sa.column("id"), sa.column("name"), schema=schema)
        with self.plain().connect() as conn:
            return list(conn.execute(sa.select(table.c.name).order_by(table.c.id)).scalars())

    def seed(self, engine: sa.Engine, owners: list[str], items: list[tuple[Any, ...]]) -> None:
        """Rows through SQLAlchemy Core, one by one so that their ids follow the order."""
        with engine.begin() as conn:
            for name in owners:
                conn.execute(TenantOwner.__table__.insert(), {"name": name})
            for name, owner_id, qty in items:
                conn.execute(TenantItem.__table__.insert(),
                             {"name": name, "owner_id": owner_id, "qty": qty})

    def dispose(self) -> None:
        for engine in self.engines:
            engine.dispose()
        self.engines.clear()


def site_for(backend: str, which: int, tmp_path: Any) -> Site:
    """The tenant site in the backend's first (0) or second (1) test database."""
    if backend == "sqlite":
        return Site("sqlite", f"sqlite:///{tmp_path / f'main{which}.db'}", "tenant_a",
                    attach_path=str(tmp_path / f"tenant_a{which}.db"))
    url = SERVER_URLS[backend][which]
    if backend == "postgresql":
        return Site(backend, url, "tenant_a")
    # MariaDB's schemas are databases, one server-wide namespace: one per test database
    return Site(backend, url, f"rhosocial_ar_tenant_{'ab'[which]}")


class Tenants:
    """The sites of one test; everything they made is dropped at the end."""

    def __init__(self, tmp_path: Any) -> None:
        self.tmp_path = tmp_path
        self.sites: list[Site] = []

    def site(self, backend: str, which: int = 0) -> Site:
        site = site_for(backend, which, self.tmp_path)
        self.sites.append(site)
        site.create_schema()
        return site

    def prepared(self, backend: str, which: int, spelling: str, *, seed: bool = True,
                 **options: Any) -> tuple[Site, sa.Engine]:
        """A site with both tables in both schemas: tenant rows and decoy rows (if ``seed``)."""
        site = self.site(backend, which)
        engine = site.engine(spelling, **options)
        plain = site.plain()
        tables = (TenantOwner.__table__, TenantItem.__table__)
        for table in tables:
            table.drop(plain, checkfirst=True)
            table.create(plain)
        for table in tables:
            table.create(engine)         # DDL too goes where the engine translates it
        if seed:
            site.seed(engine, TENANT_OWNERS, TENANT_ITEMS)
            site.seed(plain, DECOY_OWNERS, DECOY_ITEMS)
        # SQLite: a connection that loaded the schema before the default schema's tables
        # existed would resolve an unqualified name to the attached file by accident
        engine.dispose()
        return site, engine

    def cleanup(self) -> None:
        ConnectionManager.reset()
        for site in self.sites:
            try:
                if site.backend != "sqlite":
                    plain = site.plain()
                    for table in (TenantItem.__table__, TenantOwner.__table__):
                        table.drop(plain, checkfirst=True)
                site.drop_schema()
            finally:
                site.dispose()


@pytest.fixture
def tenants(tmp_path: Any) -> Iterator[Tenants]:
    made = Tenants(tmp_path)
    ConnectionManager.reset()
    internals.reset()       # a verdict left by an earlier test would hide the fast path
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture(params=SPELLINGS)
def spelling(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tenant(backend: Backend, tenants: Tenants, spelling: str) -> Site:
    """``default`` is the user's translated engine on a seeded site."""
    site, engine = tenants.prepared(backend.name, 0, spelling)
    ConnectionManager.configure({"default": {"engine": engine}})
    return site


def untouched(site: Site) -> None:
    """Nothing landed in, or was taken from, the default schema."""
    assert site.owners(None) == DECOY_OWNERS
    assert site.items(None) == DECOY_ITEMS


# -- every operation, one test each -----------------------------------------------------

class Boom(Exception):
    pass


def op_create() -> list[tuple[Any, ...]]:
    made = TenantItem.create(name="c1", owner_id=2, qty=4)
    assert made.id == 4
    unsaved = TenantItem(name="c2")
    assert unsaved.save() == 1
    assert TenantItem.find(unsaved.id).name == "c2"
    return [*TENANT_ITEMS, ("c1", 2, 4), ("c2", None, 0)]


def op_save_update() -> list[tuple[Any, ...]]:
    item = TenantItem.find(2)
    assert item.name == "a2"
    item.qty = 20
    assert item.save() == 1
    assert TenantItem.find(2).qty == 20
    return [("a1", 1, 1), ("a2", 1, 20), ("b1", 2, 3)]


def op_delete() -> list[tuple[Any, ...]]:
    item = TenantItem.find(3)
    assert item.name == "b1"
    assert item.delete() == 1
    assert TenantItem.find_by(name="b1") is None
    return TENANT_ITEMS[:2]


def op_find() -> list[tuple[Any, ...]]:
    assert TenantItem.find(1).name == "a1"
    found = TenantItem.find_by(name="b1")
    assert found is not None and (found.id, found.owner_id, found.qty) == (3, 2, 3)
    assert TenantItem.find_by(name="z1") is None        # a decoy's name
    assert TenantOwner.find(1).name == "ann"
    return TENANT_ITEMS


def op_where_keywords() -> list[tuple[Any, ...]]:
    assert [i.name for i in TenantItem.where(owner_id=1).order_by("id").all()] == ["a1", "a2"]
    assert [i.name for i in TenantItem.where(id=[1, 3]).order_by("-id").all()] == ["b1", "a1"]
    first = TenantItem.where(owner_id=2).first()
    assert first is not None and first.name == "b1"
    return TENANT_ITEMS


def op_where_fragments() -> list[tuple[Any, ...]]:
    assert [i.name for i in TenantItem.where("qty > ?", 1).order_by("-id").all()] == ["b1", "a2"]
    assert [i.qty for i in TenantItem.where("name LIKE ?", "a%").where("qty < ?", 9)
            .order_by("id").limit(5).all()] == [1, 2]
    return TENANT_ITEMS


def op_where_expressions() -> list[tuple[Any, ...]]:
    c = TenantItem.c
    assert [i.name for i in TenantItem.where(c.qty > 1).order_by("id").all()] == ["a2", "b1"]
    assert [i.name for i in TenantItem.where(c.id.in_([1, 3])).order_by("id").all()] == ["a1", "b1"]
    assert [i.name for i in TenantItem.where(c.qty.between(2, 3)).order_by("id").all()] == ["a2", "b1"]
    assert [i.name for i in TenantItem.where(c.name.like("a%")).order_by("-id").all()] == ["a2", "a1"]
    assert [i.name for i in TenantItem.where(sa.or_(c.qty == 1, c.owner_id == 2),
                                             sa.not_(c.name == "a2")).order_by("id").all()] \
        == ["a1", "b1"]
    assert TenantItem.where(c.owner_id.is_(None)).all() == []
    return TENANT_ITEMS


def op_aggregates() -> list[tuple[Any, ...]]:
    assert TenantItem.count() == 3
    assert TenantItem.where(owner_id=1).count() == 2
    assert TenantItem.where(TenantItem.c.qty > 1).count() == 2
    assert TenantItem.sum("qty") == 6
    assert TenantItem.where("qty > ?", 1).sum("qty") == 5
    assert TenantItem.max("qty") == 3 and TenantItem.min("qty") == 1
    assert TenantOwner.count() == 2
    return TENANT_ITEMS


def op_pluck() -> list[tuple[Any, ...]]:
    assert TenantItem.order_by("id").pluck("name") == ["a1", "a2", "b1"]
    assert TenantItem.where(owner_id=1).order_by("id").pluck("qty") == [1, 2]
    assert TenantItem.where(TenantItem.c.qty >= 2).order_by("id").pluck("id", "name") \
        == [(2, "a2"), (3, "b1")]
    return TENANT_ITEMS


def op_exists() -> list[tuple[Any, ...]]:
    assert TenantItem.where(name="b1").exists()
    assert not TenantItem.where(name="z1").exists()            # a decoy's name
    assert not TenantItem.where(TenantItem.c.qty > 50).exists()  # the decoys' quantities
    assert TenantItem.exists()
    return TENANT_ITEMS


def op_upsert() -> list[tuple[Any, ...]]:
    TenantItem.insert_or_update({"name": "a1", "owner_id": 1, "qty": 50}, conflict_keys=["name"])
    TenantItem.insert_or_update({"name": "c1", "owner_id": 2, "qty": 7}, conflict_keys=["name"])
    assert TenantItem.find_by(name="a1").qty == 50
    return [("a1", 1, 50), ("a2", 1, 2), ("b1", 2, 3), ("c1", 2, 7)]


def op_bulk_upsert() -> list[tuple[Any, ...]]:
    TenantItem.bulk_insert_or_update(
        [{"name": "a2", "owner_id": 1, "qty": 22}, {"name": "c2", "owner_id": 1, "qty": 8},
         {"name": "z1", "owner_id": 2, "qty": 9}],      # a decoy's name: new in the tenant
        conflict_keys=["name"])
    return [("a1", 1, 1), ("a2", 1, 22), ("b1", 2, 3), ("c2", 1, 8), ("z1", 2, 9)]


def op_bulk_insert() -> list[tuple[Any, ...]]:
    assert TenantItem.bulk_insert([{"name": f"n{i}", "owner_id": 2, "qty": i} for i in range(3)]) == 3
    assert TenantItem.count() == 6
    return [*TENANT_ITEMS, ("n0", 2, 0), ("n1", 2, 1), ("n2", 2, 2)]


def op_where_update() -> list[tuple[Any, ...]]:
    assert TenantItem.where(owner_id=1).update(qty=0) == 2
    assert TenantItem.where(TenantItem.c.name == "b1").update(qty=9) == 1
    assert TenantItem.where("qty > ?", 5).update(owner_id=1) == 1
    c = TenantItem.c
    assert TenantItem.where(c.id.between(1, 2)).update(qty=c.qty + 1) == 2   # a set-based update
    return [("a1", 1, 1), ("a2", 1, 1), ("b1", 1, 9)]


def op_where_delete() -> list[tuple[Any, ...]]:
    assert TenantItem.where("qty < ?", 2).delete() == 1
    assert TenantItem.where(TenantItem.c.name.in_(["b1", "z1"])).delete() == 1
    assert TenantItem.where(name="z2").delete() == 0
    return [("a2", 1, 2)]


def op_relations_lazy() -> list[tuple[Any, ...]]:
    ann = TenantOwner.find(1)
    assert sorted(i.name for i in ann.items()) == ["a1", "a2"]
    owner = TenantItem.find(3).owner()
    assert owner is not None and owner.name == "bob"
    return TENANT_ITEMS


def op_relations_eager() -> list[tuple[Any, ...]]:
    owners = TenantOwner.find_all().with_("items").order_by("id").all()
    assert [(o.name, sorted(i.name for i in o.items())) for o in owners] == [
        ("ann", ["a1", "a2"]), ("bob", ["b1"])]
    items = TenantItem.find_all().with_("owner").order_by("id").all()
    assert [i.owner().name for i in items] == ["ann", "ann", "bob"]
    return TENANT_ITEMS


def op_transaction_savepoint() -> list[tuple[Any, ...]]:
    with TenantItem.transaction():
        TenantItem.create(name="t1", qty=1)
        assert TenantItem.count() == 4                   # reads inside see the work
        with pytest.raises(Boom):
            with TenantItem.transaction():               # a savepoint
                TenantItem.create(name="t2")
                TenantItem.where(name="a1").update(qty=11)
                assert TenantItem.count() == 5
                raise Boom
        assert TenantItem.find(1).qty == 1
        TenantItem.where(name="a2").update(qty=12)
    with pytest.raises(Boom):
        with TenantItem.transaction():
            TenantItem.create(name="t3")
            raise Boom
    return [("a1", 1, 1), ("a2", 1, 12), ("b1", 2, 3), ("t1", None, 1)]


OPERATIONS = {fn.__name__.removeprefix("op_"): fn for fn in (
    op_create, op_save_update, op_delete, op_find, op_where_keywords, op_where_fragments,
    op_where_expressions, op_aggregates, op_pluck, op_exists, op_upsert, op_bulk_upsert,
    op_bulk_insert, op_where_update, op_where_delete, op_relations_lazy, op_relations_eager,
    op_transaction_savepoint,
)}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_every_operation_lands_in_the_translated_schema(tenant, operation):
    expected = OPERATIONS[operation]()
    assert tenant.items(tenant.schema) == expected
    assert tenant.owners(tenant.schema) == TENANT_OWNERS
    untouched(tenant)


def test_create_then_count_agree(tenant):
    """The issue's report: the write went to public.items, the count read tenant_a.items."""
    TenantItem.create(name="x")
    assert TenantItem.count() == 4
    assert ("x", None, 0) in tenant.items(tenant.schema)
    untouched(tenant)


def test_tables_made_by_the_library_land_in_the_translated_schema(backend, tenants, spelling):
    """make_tables() (create_table/drop_table) runs DDL through the user's engine."""
    site = tenants.site(backend.name)
    ConnectionManager.configure({"default": {"engine": site.engine(spelling)}})
    make_tables(TenantOwner, TenantItem)
    TenantItem.create(name="only")
    assert site.items(site.schema) == [("only", None, 0)]
    assert not sa.inspect(site.plain()).has_table("es_items")


# -- two-phase branches and transfers ---------------------------------------------------

@pytest.fixture
def two_tenants(backend: Backend, tenants: Tenants, spelling: str) -> tuple[Site, Site]:
    """``default`` and ``secondary``: translated engines on the backend's two databases."""
    first, one = tenants.prepared(backend.name, 0, spelling)
    second, two = tenants.prepared(backend.name, 1, spelling, seed=False)
    second.seed(second.plain(), DECOY_OWNERS, DECOY_ITEMS)
    ConnectionManager.configure({"default": {"engine": one}, "secondary": {"engine": two}})
    return first, second


@pytest.mark.backends("postgresql", "mysql")
def test_a_prepared_transaction_by_hand_lands_in_the_translated_schema(two_tenants):
    first, _ = two_tenants
    tx = Transaction(get_connection(), two_phase=True)
    with tx:
        TenantItem.create(name="p1", qty=5)
        TenantItem.where(name="a1").update(qty=6)
        assert TenantItem.count() == 4
    tx.prepare()
    tx.commit()
    assert first.items(first.schema) == [("a1", 1, 6), ("a2", 1, 2), ("b1", 2, 3), ("p1", None, 5)]
    untouched(first)
    assert in_doubt(["default"]) == []


@pytest.mark.backends("postgresql", "mysql")
def test_two_phase_branches_land_in_the_translated_schemas(two_tenants):
    first, second = two_tenants
    with two_phase("default", "secondary"):
        TenantItem.create(name="left", qty=1)
        TenantItem.where(name="b1").update(qty=30)
        OtherItem.create(name="right", qty=2)
        assert TenantItem.count() == 4 and OtherItem.count() == 1
    with pytest.raises(Boom):
        with two_phase("default", "secondary"):
            TenantItem.create(name="lost-left")
            OtherItem.create(name="lost-right")
            raise Boom
    assert first.items(first.schema) == [*TENANT_ITEMS[:2], ("b1", 2, 30), ("left", None, 1)]
    assert second.items(second.schema) == [("right", None, 2)]
    untouched(first)
    untouched(second)
    assert in_doubt(["default", "secondary"]) == []
    report = recover()
    assert report.committed == [] and report.rolled_back == [] and report.skipped == []


@pytest.mark.backends("postgresql", "mysql")
def test_a_two_phase_transfer_moves_rows_between_translated_schemas(two_tenants):
    first, second = two_tenants
    result = transfer(TenantItem.where("qty > ?", 1), OtherItem, batch_size=1,
                      delete_source=True, progress=False)
    assert (result.rows, result.batches, result.strategy) == (2, 2, "two-phase")
    assert first.items(first.schema) == [("a1", 1, 1)]
    assert second.items(second.schema) == [("a2", 1, 2), ("b1", 2, 3)]
    untouched(first)
    untouched(second)
    assert in_doubt(["default", "secondary"]) == []


def test_two_phase_across_postgresql_and_mariadb_lands_in_the_translated_schemas(tenants):
    """One branch on PostgreSQL's tenant schema, one in MariaDB's tenant database."""
    require_backend("postgresql")
    require_backend("mysql")
    pg, pg_engine = tenants.prepared("postgresql", 0, SPELLINGS[0])
    my, my_engine = tenants.prepared("mysql", 0, SPELLINGS[1], seed=False)
    my.seed(my.plain(), DECOY_OWNERS, DECOY_ITEMS)
    ConnectionManager.configure({"default": {"engine": pg_engine},
                                 "secondary": {"engine": my_engine}})
    with two_phase("default", "secondary"):
        TenantItem.create(name="pg", qty=1)
        OtherItem.create(name="my", qty=2)
    result = transfer(TenantItem.where(owner_id=1), OtherItem, delete_source=True, progress=False,
                      map={"name": "name", "owner_id": "owner_id", "qty": "qty"},
                      conflict_keys=["name"])
    assert (result.rows, result.strategy) == (2, "two-phase")
    assert pg.items(pg.schema) == [("b1", 2, 3), ("pg", None, 1)]
    assert my.items(my.schema) == [("my", None, 2), ("a1", 1, 1), ("a2", 1, 2)]
    untouched(pg)
    untouched(my)
    assert in_doubt(["default", "secondary"]) == []
