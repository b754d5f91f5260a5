"""The demo's databases: the files it ships, its connections, its tables and the Chinook rows.

    from rhosocial_ar.demo import databases
    databases.packaged("migrations")      # .../site-packages/rhosocial_ar/demo/migrations
    databases.prepare(args)               # configure, check, migrate and load; returns the rows

The Chinook sample and the two migration chains ('catalog', 'sales') are
package data, found with ``importlib.resources`` wherever the package is
installed. Before anything is changed, both databases are checked: a server
that cannot be reached, or a database that already holds a table the demo
would create (and that no earlier demo run created), stops the demo with
both sides left as they were.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path

import sqlalchemy as sa

from .. import ActiveRecord, ConnectionManager, Transaction, get_connection, migrate
from ..errors import CommandError, describe_error
from .models import ALL_MODELS, CATALOG, SALES, ShardedInvoice

__all__ = ["SIDES", "find_chinook", "migration_app", "packaged", "prepare"]

SIDES = ("catalog", "sales")
CHINOOK_FILE = ("chinook", "Chinook_Sqlite.sqlite")    # MIT licence, LICENSE.md beside it


def packaged(*parts: str) -> Path:
    """A file or directory shipped in ``rhosocial_ar.demo``, as a path on disk.

    SQLite opens the Chinook file and Alembic reads the chains by path, so a
    package imported from a zip archive cannot run the demo.
    """
    found = files("rhosocial_ar.demo")
    for part in parts:
        found = found / part
    if not isinstance(found, Path):
        raise CommandError(f"the demo's files are not on disk ({found}); install rhosocial_ar "
                           "as a directory (pip does) to run the demo")
    return found


def find_chinook(explicit: Path | None) -> Path:
    """The Chinook file: ``explicit``, else the copy shipped in the package."""
    path = explicit if explicit is not None else packaged(*CHINOOK_FILE)
    if not path.is_file():
        raise CommandError(f"Chinook database not found at {path}")
    return path


def migration_app() -> None:
    """Configure 'catalog' and 'sales' as the demo's default SQLite files in ./demo_data.

    For the command line, with the chains in the package:
    ``rhosocial-ar db current --all --app rhosocial_ar.demo:migration_app --directory DIR``.
    """
    Path("demo_data").mkdir(exist_ok=True)
    ConnectionManager.configure({name: {"url": f"sqlite:///demo_data/{name}.db"} for name in SIDES})


# -- connections ------------------------------------------------------------------

def configure(args: argparse.Namespace, chinook: Path) -> dict[str, str]:
    """Configure 'catalog', 'sales' and the read-only 'chinook'; return the URLs shown."""
    urls = {}
    for name in SIDES:
        url = getattr(args, f"{name}_url")
        if url is None:
            args.dir.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{args.dir / f'{name}.db'}"
        urls[name] = url
    source = f"sqlite:///file:{chinook.resolve()}?mode=ro&uri=true"
    ConnectionManager.configure({
        "catalog": {"url": urls["catalog"]},
        "sales": {"url": urls["sales"]},
        "chinook": {"url": source, "read_only": True},
    })
    return {name: get_connection(name).engine.url.render_as_string(hide_password=True)
            for name in SIDES}


def check_reachable(name: str, url: str) -> None:
    """Open one connection to ``name`` so that a dead server fails with a clear line."""
    try:
        with get_connection(name).engine.connect():
            pass
    except sa.exc.SQLAlchemyError as exc:
        raise CommandError(f"cannot open {name!r} at {url}: {describe_error(exc)}") from exc


def clashes(name: str) -> list[str]:
    """Tables the demo would create on ``name`` that its database already holds from elsewhere.

    After an earlier run (the version table records a revision) the demo's
    own tables are downgraded first, so only a database the demo never
    migrated can clash.
    """
    if migrate.current(name):
        return []
    ours = {model.__table__.name for model in ALL_MODELS if model.__connection__ == name}
    ours.add(ShardedInvoice.__table__.name)     # a side given by URL holds a shard (shards.py)
    present = set(sa.inspect(get_connection(name).engine).get_table_names())
    return sorted(ours & present)


def check_empty(urls: dict[str, str], recreated: set[str]) -> None:
    """Refuse, before either side is touched, a database holding tables the demo would create."""
    found = {name: clashes(name) for name in SIDES if name not in recreated}
    problems = [f"connection {name!r} ({urls[name]}) already holds {', '.join(tables)}"
                for name, tables in found.items() if tables]
    if problems:
        flags = " / ".join(f"--{name}-url" for name, tables in found.items() if tables)
        raise CommandError(f"{'; '.join(problems)}, which the demo creates; nothing was changed "
                           f"on either side: give the demo an empty database ({flags}) or drop "
                           f"those tables")


def recreate_files(args: argparse.Namespace) -> set[str]:
    """Remove the default SQLite files of a previous run; returns the sides that use them."""
    recreated = set()
    for name in SIDES:
        if getattr(args, f"{name}_url") is None:
            get_connection(name).dispose()      # close the file before removing it
            (args.dir / f"{name}.db").unlink(missing_ok=True)
            recreated.add(name)
    return recreated


# -- tables and rows ---------------------------------------------------------------

def migrate_fresh(name: str, directory: Path) -> str:
    """Downgrade a previous run's tables, then upgrade to the chain's head; says what ran."""
    steps = []
    if migrate.current(name):
        migrate.downgrade(name, "base", directory)
        steps.append("downgrade to base")
    revisions = len(migrate.history(name, directory))
    (head,) = migrate.upgrade(name, "head", directory)
    steps.append(f"upgrade to {head} ({revisions} revision{'s' if revisions > 1 else ''})")
    return ", ".join(steps)


def source_sql(model: type[ActiveRecord]) -> str:
    """The SELECT that reads a model's rows from the Chinook table (``ArtistId AS artist_id``)."""
    columns = ", ".join(
        f'"{"".join(part.capitalize() for part in name.split("_"))}" AS {name}'
        for name in model.model_fields
    )
    return f'SELECT {columns} FROM "{model.__chinook__}"'  # type: ignore[attr-defined]


def load(models: Iterable[type[ActiveRecord]], connection: str) -> tuple[dict[str, int], float]:
    """Copy the models' Chinook tables into ``connection`` in one transaction."""
    started = time.perf_counter()
    counts = {}
    with Transaction(connection):
        for model in models:
            with model.using_connection("chinook"):
                rows = model.raw_query(source_sql(model))
            counts[model.__table__.name] = model.bulk_insert(rows)
    return counts, time.perf_counter() - started


def show(label: str, text: str) -> None:
    """Print one line of the tour."""
    print(f"  {label:<23}{text}")


def prepare(args: argparse.Namespace, chinook: Path, directory: Path) -> int:
    """Configure the connections, check both sides, recreate the demo tables and load Chinook.

    Returns the rows loaded.
    """
    urls = configure(args, chinook)
    print("rhosocial-ar demo: the Chinook store split over two databases")
    for name, url in urls.items():
        show(name, url)
    show("chinook (read-only)", str(chinook))
    for name, url in urls.items():
        check_reachable(name, url)
    check_empty(urls, recreated={n for n in SIDES if getattr(args, f"{n}_url") is None})
    recreate_files(args)
    print(f"migrations: the chains in {directory}, one per connection")
    for name in SIDES:
        show(name, migrate_fresh(name, directory))
    print("load: raw_query from 'chinook', bulk_insert, one transaction per side")
    total = 0
    for name, models in (("catalog", CATALOG), ("sales", SALES)):
        counts, seconds = load(models, name)
        total += sum(counts.values())
        show(name, ", ".join(f"{t} {n}" for t, n in counts.items())
             + f": {sum(counts.values())} rows in {seconds:.2f} s")
    return total
