"""rhosocial_ar on asyncpg: the benchmark's models, the awaitable forms."""

from __future__ import annotations

from typing import Any

from rhosocial_ar import ConnectionManager

from ..impls.rhosocial import User
from . import asyncpg_url


class Impl:
    name = "rhosocial_ar"

    async def setup(self, url: str, pool: int) -> None:
        ConnectionManager.reset()
        ConnectionManager.configure("default", {"url": asyncpg_url(url, "postgresql+asyncpg"),
                                                "pool_size": pool, "max_overflow": 0})

    async def teardown(self) -> None:
        await ConnectionManager.areset()

    async def find(self, id: int) -> tuple[int, str]:  # noqa: A002
        user = await User.afind(id)
        return user.id, user.name  # type: ignore[return-value]

    async def query(self, age: int) -> list[int]:
        return [u.id for u in await User.where("age > ?", age).order_by("id").limit(20).aall()]  # type: ignore[misc]

    async def insert(self, row: dict[str, Any]) -> int:
        return (await User.acreate(**row)).id  # type: ignore[return-value]

    async def eager(self, low: int, high: int) -> tuple[int, int]:
        found = await User.where(User.c.id.between(low, high)).order_by("id").with_("posts").aall()
        return len(found), sum(len(u.posts()) for u in found)
