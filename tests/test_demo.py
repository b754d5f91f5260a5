"""``rhosocial-ar demo`` end to end: in-process, as a command, and on each server.

The figures the demo prints and leaves in its databases are checked against
the Chinook source file, read with the standard library's sqlite3.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rhosocial_ar import ConnectionManager, migrate
from rhosocial_ar.cli import main
from rhosocial_ar.demo import find_chinook
from rhosocial_ar.demo.models import ALL_MODELS, ShardedInvoice
from rhosocial_ar.sharding import shard_index

from .conftest import SERVER_URLS, Backend, require_backend

CHINOOK = find_chinook(None)


@pytest.fixture(autouse=True)
def _forget_connections() -> Iterator[None]:
    """The demo configures 'catalog', 'sales' and 'chinook'; forget them afterwards."""
    yield
    ConnectionManager.reset()


def _money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    """What the demo must find: counts and totals computed from the Chinook file itself."""
    db = sqlite3.connect(f"file:{CHINOOK}?mode=ro", uri=True)
    try:
        one = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
        totals = [row[0] for row in db.execute("SELECT Total FROM Invoice")]
        # the demo's new sale: the first two AC/DC tracks, bought by customer 1
        sale = [row[0] for row in db.execute(
            "SELECT t.UnitPrice FROM Track t JOIN Album a ON a.AlbumId = t.AlbumId "
            "JOIN Artist r ON r.ArtistId = a.ArtistId WHERE r.Name = 'AC/DC' "
            "ORDER BY t.TrackId LIMIT 2")]
        top = db.execute(
            "SELECT r.Name, SUM(l.UnitPrice * l.Quantity) AS revenue FROM InvoiceLine l "
            "JOIN Track t ON t.TrackId = l.TrackId JOIN Album a ON a.AlbumId = t.AlbumId "
            "JOIN Artist r ON r.ArtistId = a.ArtistId GROUP BY r.ArtistId "
            "ORDER BY revenue DESC LIMIT 1").fetchone()
        total = sum((_money(t) for t in totals), Decimal(0))
        return {
            "tracks": one("SELECT COUNT(*) FROM Track"),
            "artists": one("SELECT COUNT(*) FROM Artist"),
            "invoices": one("SELECT COUNT(*) FROM Invoice"),
            "lines": one("SELECT COUNT(*) FROM InvoiceLine"),
            # the transfer moves the lines of the first two years' invoices
            "archived": one(
                "SELECT COUNT(*) FROM InvoiceLine l JOIN Invoice i ON i.InvoiceId = l.InvoiceId "
                "WHERE i.InvoiceDate < (SELECT printf('%04d-01-01', "
                "CAST(strftime('%Y', MIN(InvoiceDate)) AS INTEGER) + 2) FROM Invoice)"),
            "selling_artists": one(
                "SELECT COUNT(DISTINCT a.ArtistId) FROM InvoiceLine l "
                "JOIN Track t ON t.TrackId = l.TrackId JOIN Album a ON a.AlbumId = t.AlbumId"),
            "total": total,
            "total_after_sale": total + sum((_money(p) for p in sale), Decimal(0)),
            "top": (top[0], _money(top[1])),
        }
    finally:
        db.close()


def check_output(out: str, source: dict[str, Any]) -> None:
    """The printed figures are the source's."""
    assert f"artists {source['artists']}," in out
    assert f"tracks {source['tracks']}:" in out
    assert f"invoices {source['invoices']}, invoice_lines {source['lines']}:" in out
    assert f"{source['invoices']} invoices total {source['total']}" in out
    assert f"{source['selling_artists']} artists with sales" in out
    name, revenue = source["top"]
    assert f"top: {name} {revenue}" in out
    assert f"{source['invoices'] + 1} invoices total {source['total_after_sale']}" in out
    assert f"still {source['selling_artists']} rows" in out
    assert f"{source['archived']} lines of " in out and "left in sales 0" in out
    assert ": match" in out
    check_shard_output(out, source)
    assert out.rstrip().splitlines()[-1].startswith("done: ")


def check_shard_output(out: str, source: dict[str, Any]) -> None:
    """The sharded step's lines: each read checked against the unsharded invoices."""
    lines = {line[2:25].strip(): line[25:] for line in out.splitlines() if line.startswith("  ")}
    assert "shards: the invoices split by customer over two more databases" in out
    for label in ("key-routed read", "fan-out order/limit", "fan-out aggregates"):
        assert lines[label].endswith(": match"), lines[label]
    assert "(0 on sales_s0, 1 on sales_s1)" in lines["key-routed read"] \
        or "(1 on sales_s0, 0 on sales_s1)" in lines["key-routed read"]
    assert "2 queries" in lines["fan-out order/limit"]
    assert lines["fan-out aggregates"].startswith(
        f"{source['invoices'] + 1} invoices total {source['total_after_sale']}, avg ")
    per_shard = dict(part.split()[:2] for part in lines["bulk_insert per shard"].split(", ")[:2])
    assert sum(map(int, per_shard.values())) == source["invoices"] + 1


def check_shards(urls: list[str], source: dict[str, Any]) -> None:
    """Every invoice on exactly one shard, the one its customer hashes to; totals add up."""
    customers: list[int] = []
    total = Decimal(0)
    for index, url in enumerate(urls):
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT customer_id, total FROM sharded_invoices")).all()
        finally:
            engine.dispose()
        assert {shard_index(c, len(urls)) for c, _ in rows} == {index}
        customers += [c for c, _ in rows]
        total += sum((_money(t) for _, t in rows), Decimal(0))
    assert len(customers) == source["invoices"] + 1
    assert total == source["total_after_sale"]


def check_databases(catalog_url: str, sales_url: str, source: dict[str, Any]) -> None:
    """The rows the demo left behind add up, in both databases."""
    catalog, sales = sa.create_engine(catalog_url), sa.create_engine(sales_url)
    try:
        with catalog.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM tracks")).scalar() \
                == source["tracks"]
            assert conn.execute(sa.text("SELECT COUNT(*) FROM invoice_line_archive")).scalar() \
                == source["archived"]
        with sales.connect() as conn:
            one = lambda sql: conn.execute(sa.text(sql)).scalar()  # noqa: E731
            assert one("SELECT COUNT(*) FROM invoices") == source["invoices"] + 1
            assert one("SELECT COUNT(*) FROM invoice_lines") \
                == source["lines"] + 2 - source["archived"]
            assert _money(one("SELECT SUM(total) FROM invoices")) == source["total_after_sale"]
            assert one("SELECT COUNT(*) FROM artist_sales") == source["selling_artists"]
            assert _money(one("SELECT SUM(revenue) FROM artist_sales")) \
                == source["total_after_sale"]
    finally:
        catalog.dispose()
        sales.dispose()


def drop_demo_tables(*urls: str) -> None:
    """Leave the shared test databases as other tests expect them: without the demo's tables
    and the version tables of its migrations."""
    names = [model.__table__.name for model in [*ALL_MODELS, ShardedInvoice]]
    names += [migrate.version_table(name) for name in ("catalog", "sales")]
    for url in urls:
        engine = sa.create_engine(url)
        try:
            metadata = sa.MetaData()
            metadata.reflect(engine, only=lambda name, _meta: name in names)
            metadata.drop_all(engine)
        finally:
            engine.dispose()


def test_demo_in_process_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   source: dict[str, Any]) -> None:
    for _ in range(2):   # the files are recreated, so a second run gives the same figures
        assert main(["demo", "--dir", str(tmp_path)]) == 0
        captured = capsys.readouterr()
        assert captured.err == ""
        check_output(captured.out, source)
    check_databases(f"sqlite:///{tmp_path / 'catalog.db'}", f"sqlite:///{tmp_path / 'sales.db'}",
                    source)
    check_shards([f"sqlite:///{tmp_path / 'sales_s0.db'}", f"sqlite:///{tmp_path / 'sales_s1.db'}"],
                 source)


def _command() -> list[str]:
    """The installed console script of this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("rhosocial-ar")
    if script.exists():
        return [str(script)]
    found = shutil.which("rhosocial-ar")
    return [found] if found else [sys.executable, "-m", "rhosocial_ar.cli"]


def test_demo_as_a_command(tmp_path: Path, source: dict[str, Any]) -> None:
    # run from an unrelated directory: the Chinook file is found beside the repository
    done = subprocess.run([*_command(), "demo", "--dir", "data", "--drop"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    check_output(done.stdout, source)
    assert "tables dropped" in done.stdout
    assert (tmp_path / "data" / "catalog.db").is_file()
    for shard in ("sales_s0", "sales_s1"):     # --drop drops the sharded table too
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'data' / f'{shard}.db'}")
        try:
            assert sa.inspect(engine).get_table_names() == []
        finally:
            engine.dispose()


def test_demo_failure_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rhosocial_ar.cli", "demo", "--chinook", str(tmp_path / "nope")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"rhosocial-ar: error: Chinook database not found at {tmp_path / 'nope'}"]


def test_unreachable_server_is_one_line(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql+psycopg2://someone:s3cret@127.0.0.1:1/nowhere"
    assert main(["demo", "--dir", str(tmp_path), "--sales-url", url]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert err.startswith("rhosocial-ar: error: cannot open 'sales' at ")
    assert "s3cret" not in err and "Traceback" not in err


@pytest.mark.backends("postgresql", "mysql")
def test_demo_on_server(backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                        source: dict[str, Any]) -> None:
    catalog_url, sales_url = backend.urls
    args = ["demo", "--dir", str(tmp_path), "--catalog-url", catalog_url, "--sales-url", sales_url]
    try:
        assert main(args) == 0
        captured = capsys.readouterr()
        assert captured.err == ""
        check_output(captured.out, source)
        assert f"to_sql ({backend.name})" in captured.out
        assert not list(tmp_path.iterdir())   # nothing went to SQLite, the shards neither
        check_databases(catalog_url, sales_url, source)
        check_shards([catalog_url, sales_url], source)
    finally:
        drop_demo_tables(catalog_url, sales_url)


def test_demo_across_servers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             source: dict[str, Any]) -> None:
    require_backend("postgresql")
    require_backend("mysql")
    catalog_url, sales_url = SERVER_URLS["postgresql"][0], SERVER_URLS["mysql"][1]
    args = ["demo", "--catalog-url", catalog_url, "--sales-url", sales_url, "--dir", str(tmp_path)]
    try:
        assert main(args) == 0
        out = capsys.readouterr().out
        check_output(out, source)
        assert "strategy two-phase" in out          # PostgreSQL and MariaDB both prepare
        assert f"sales_s0               {sa.make_url(catalog_url).render_as_string()}" in out
        check_databases(catalog_url, sales_url, source)
        check_shards([catalog_url, sales_url], source)     # one shard on each server
    finally:
        drop_demo_tables(catalog_url, sales_url)


def _snapshot(url: str) -> dict[str, list[Any]]:
    """Every table of a database and its rows, to compare before and after."""
    engine = sa.create_engine(url)
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine)
        with engine.connect() as conn:
            return {name: sorted(map(tuple, conn.execute(sa.select(table))))
                    for name, table in metadata.tables.items()}
    finally:
        engine.dispose()


def test_a_database_holding_a_demo_table_is_left_alone(
        backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 'customers' of someone else's on the sales side: refused before either side changes."""
    catalog_url, sales_url = backend.urls
    engine = sa.create_engine(sales_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE customers (id INTEGER PRIMARY KEY, who VARCHAR(20))"))
            conn.execute(sa.text("INSERT INTO customers VALUES (1, 'not the demo''s')"))
    finally:
        engine.dispose()
    # the catalog side holds a finished earlier run, which the demo would normally redo
    try:
        assert main(["demo", "--dir", str(tmp_path), "--catalog-url", catalog_url,
                     "--sales-url", f"sqlite:///{tmp_path / 'spare.db'}"]) == 0
        capsys.readouterr()
        before = _snapshot(catalog_url), _snapshot(sales_url)
        assert "tracks" in before[0] and list(before[1]) == ["customers"]

        code = main(["demo", "--dir", str(tmp_path), "--catalog-url", catalog_url,
                     "--sales-url", sales_url])
        out, err = capsys.readouterr()
        assert code == 1 and "migrations:" not in out
        shown = sa.make_url(sales_url).render_as_string(hide_password=True)
        assert err == (f"rhosocial-ar: error: connection 'sales' ({shown}) already holds "
                       f"customers, which the demo creates; nothing was changed on either side: "
                       f"give the demo an empty database (--sales-url) or drop those tables\n")
        assert (_snapshot(catalog_url), _snapshot(sales_url)) == before
    finally:
        drop_demo_tables(catalog_url)


def test_a_sharded_invoices_table_of_someone_elses_is_left_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A side given by URL holds a shard: a table of that name the demo did not make stops it."""
    sales = tmp_path / "theirs.db"
    engine = sa.create_engine(f"sqlite:///{sales}")
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE sharded_invoices (id INTEGER PRIMARY KEY)"))
    finally:
        engine.dispose()
    assert main(["demo", "--dir", str(tmp_path), "--sales-url", f"sqlite:///{sales}"]) == 1
    out, err = capsys.readouterr()
    assert "migrations:" not in out
    assert "already holds sharded_invoices, which the demo creates" in err
