"""SQLAlchemy Core on an AsyncEngine: Table objects, select(), Rows."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from . import asyncpg_url

metadata = sa.MetaData()
users = sa.Table("users", metadata, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("name", sa.String(100)), sa.Column("email", sa.String(255)),
                 sa.Column("age", sa.Integer), sa.Column("created_at", sa.DateTime))
posts = sa.Table("posts", metadata, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("user_id", sa.Integer), sa.Column("title", sa.String(200)),
                 sa.Column("body", sa.Text))


class Impl:
    name = "core"

    async def setup(self, url: str, pool: int) -> None:
        self.engine = create_async_engine(asyncpg_url(url, "postgresql+asyncpg"),
                                          pool_size=pool, max_overflow=0)

    async def teardown(self) -> None:
        await self.engine.dispose()

    async def find(self, id: int) -> tuple[int, str]:  # noqa: A002
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.id == id))).one()
        return row.id, row.name

    async def query(self, age: int) -> list[int]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(users).where(users.c.age > age)
                                       .order_by(users.c.id).limit(20))).all()
        return [r.id for r in rows]

    async def insert(self, row: dict[str, Any]) -> int:
        async with self.engine.begin() as conn:
            return (await conn.execute(users.insert().values(row).returning(users.c.id))).scalar_one()  # type: ignore[no-any-return]

    async def eager(self, low: int, high: int) -> tuple[int, int]:
        async with self.engine.connect() as conn:
            found = (await conn.execute(sa.select(users).where(users.c.id.between(low, high))
                                        .order_by(users.c.id))).all()
            theirs = (await conn.execute(sa.select(posts).where(
                posts.c.user_id.in_([u.id for u in found])))).all()
        by_user: dict[int, list[Any]] = {u.id: [] for u in found}
        for post in theirs:
            by_user[post.user_id].append(post)
        return len(by_user), sum(map(len, by_user.values()))
