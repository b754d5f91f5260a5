"""Tortoise ORM: its models on the same tables, prefetch_related for the posts."""

from __future__ import annotations

from typing import Any

from tortoise import Tortoise, fields
from tortoise.models import Model

from . import asyncpg_url


class User(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=100)
    email = fields.CharField(max_length=255)
    age = fields.IntField()
    created_at = fields.DatetimeField()

    class Meta:
        table = "users"


class Post(Model):
    id = fields.IntField(primary_key=True)
    user: Any = fields.ForeignKeyField("models.User", related_name="posts")
    title = fields.CharField(max_length=200)
    body = fields.TextField()

    class Meta:
        table = "posts"


class Impl:
    name = "tortoise"

    async def setup(self, url: str, pool: int) -> None:
        await Tortoise.init(db_url=f"{asyncpg_url(url, 'asyncpg')}?minsize={pool}&maxsize={pool}",
                            modules={"models": [__name__]}, use_tz=False)

    async def teardown(self) -> None:
        await Tortoise.close_connections()

    async def find(self, id: int) -> tuple[int, str]:  # noqa: A002
        user = await User.get(id=id)
        return user.id, user.name

    async def query(self, age: int) -> list[int]:
        return [u.id for u in await User.filter(age__gt=age).order_by("id").limit(20)]

    async def insert(self, row: dict[str, Any]) -> int:
        return (await User.create(**row)).id

    async def eager(self, low: int, high: int) -> tuple[int, int]:
        found = await User.filter(id__gte=low, id__lte=high).order_by("id").prefetch_related("posts")
        return len(found), sum(len(u.posts) for u in found)  # type: ignore[attr-defined]
