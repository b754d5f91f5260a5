"""Raw asyncpg: a pool, hand-written SQL, Records (the baseline)."""

from __future__ import annotations

from typing import Any

import asyncpg

USER = "SELECT id, name, email, age, created_at FROM users"
INSERT = "INSERT INTO users (name, email, age, created_at) VALUES ($1, $2, $3, $4) RETURNING id"


class Impl:
    name = "asyncpg"

    async def setup(self, url: str, pool: int) -> None:
        self.pool = await asyncpg.create_pool(url, min_size=pool, max_size=pool)

    async def teardown(self) -> None:
        await self.pool.close()

    async def find(self, id: int) -> tuple[int, str]:  # noqa: A002
        row = await self.pool.fetchrow(f"{USER} WHERE id = $1", id)
        return row["id"], row["name"]

    async def query(self, age: int) -> list[int]:
        rows = await self.pool.fetch(f"{USER} WHERE age > $1 ORDER BY id LIMIT 20", age)
        return [r["id"] for r in rows]

    async def insert(self, row: dict[str, Any]) -> int:
        return await self.pool.fetchval(INSERT, row["name"], row["email"], row["age"],  # type: ignore[no-any-return]
                                        row["created_at"])

    async def eager(self, low: int, high: int) -> tuple[int, int]:
        async with self.pool.acquire() as conn:
            users = await conn.fetch(f"{USER} WHERE id BETWEEN $1 AND $2 ORDER BY id", low, high)
            posts = await conn.fetch("SELECT id, user_id, title, body FROM posts "
                                     "WHERE user_id = ANY($1::int[])", [u["id"] for u in users])
        by_user: dict[int, list[Any]] = {u["id"]: [] for u in users}
        for post in posts:
            by_user[post["user_id"]].append(post)
        return len(by_user), sum(map(len, by_user.values()))
