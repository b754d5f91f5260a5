"""Migrations stay sync (Alembic): an async app runs them in the asyncio bridge, or from the command line."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from rhosocial_ar import ActiveRecord, ConnectionManager, Field, MigrationError, migrate, registry
from rhosocial_ar.aio import run
from tests.test_async import AsyncBackend, adb  # noqa: F401  (the fixture)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A registry of this test's own, cwd = tmp_path (as tests/test_migrate.py)."""
    monkeypatch.setattr(registry, "_metadata", {})
    monkeypatch.setattr(registry, "_by_name", defaultdict(list))
    monkeypatch.setattr(registry, "_by_table", defaultdict(list))
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_an_async_app_migrates_in_the_bridge(adb: AsyncBackend) -> None:  # noqa: F811
    class Item(ActiveRecord):
        __table_name__ = "async_items"
        id: int | None = None
        label: str = Field(max_length=30)

    async def main() -> None:
        adb.configure()
        try:
            with pytest.raises(MigrationError, match=r"connection 'default' is async: run its "
                                                     r"migrations in the event loop with await"):
                migrate.current("default")
            await run(migrate.revision, "default", "items", autogenerate=True)
            (head,) = await run(migrate.upgrade, "default")
            assert await run(migrate.current, "default") == (head,)
            await Item.acreate(label="one")
            assert await Item.apluck("label") == ["one"]
            assert await run(migrate.downgrade, "default", "base") == ()
        finally:
            await ConnectionManager.areset()

    asyncio.run(main())
