"""rhosocial_ar: pydantic models, ``Model.transaction()``, ``save``, ``find``, ``where``, ``with_``.

    impl = Impl(target); impl.setup()
    impl.w4_find([3, 1])      # [User(id=3, ...), User(id=1, ...)] via User.find()

The connection is configured the way a user would (``ConnectionManager.configure``
with a URL); only ``connect_args`` (the counting cursors) and, on SQLite, a
pool ``connect`` listener for the pragmas are added, neither of which is a
statement-execution event.
"""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import event

from rhosocial_ar import (
    ActiveRecord,
    BelongsTo,
    ConnectionManager,
    Field,
    HasMany,
    IntegerPKMixin,
    get_connection,
)

from ..schema import UPSERT_KEY
from . import base
from .sqla import sqlite_pragmas


class User(IntegerPKMixin, ActiveRecord):
    __table_name__ = "users"
    name: str = Field(max_length=100)
    email: str = Field(max_length=255)
    age: int
    created_at: datetime.datetime
    posts: ClassVar[HasMany[Post]] = HasMany(foreign_key="user_id", inverse_of="user")


class Post(IntegerPKMixin, ActiveRecord):
    __table_name__ = "posts"
    user_id: int
    title: str = Field(max_length=200)
    body: str = Field(sa_type=sa.Text)
    user: ClassVar[BelongsTo[User]] = BelongsTo(foreign_key="user_id", inverse_of="posts")


class Impl(base.Impl):
    name = "rhosocial_ar"

    def setup(self) -> None:
        ConnectionManager.reset()
        ConnectionManager.configure("default", {
            "url": self.target.sa_url(), "connect_args": self.target.sa_connect_args()})
        if self.target.dialect == "sqlite":
            event.listen(get_connection().engine, "connect", sqlite_pragmas)
        User.count()

    def teardown(self) -> None:
        ConnectionManager.reset()

    def posts_of(self, user: Any) -> list[Any]:
        return list(user.posts())

    def w1_create(self, rows: list[dict[str, Any]]) -> list[int]:
        ids = []
        with User.transaction():
            for row in rows:
                user = User(**row)
                user.save()
                ids.append(user.id)
        return ids

    def w2_bulk_insert(self, rows: list[dict[str, Any]]) -> int:
        with User.transaction():
            return User.bulk_insert(rows)

    def w3_load_all(self) -> list[Any]:
        with User.transaction():
            return User.all()

    def w4_find(self, ids: list[int]) -> list[Any]:
        with User.transaction():
            return [User.find(i) for i in ids]

    def w5_query(self, thresholds: list[int]) -> list[list[Any]]:
        with User.transaction():
            return [User.where("age > ?", t).order_by("id").limit(20).all() for t in thresholds]

    def w6_update(self) -> int:
        with User.transaction():
            found = User.all()
            for user in found:
                user.age += 100
                user.save()
        return len(found)

    def w7_eager(self) -> tuple[list[Any], int]:
        with User.transaction():
            found = User.with_("posts").all()
            return found, sum(len(u.posts()) for u in found)

    def w8_query_columns(self, thresholds: list[int]) -> list[list[Any]]:
        with User.transaction():
            return [User.where(User.c.age > t).order_by("id").limit(20).all() for t in thresholds]

    def w9_count(self, thresholds: list[int]) -> list[Any]:
        with User.transaction():
            return [User.where(age=t).count() for t in thresholds]

    def w10_sum(self, thresholds: list[int]) -> list[Any]:
        with User.transaction():
            return [User.where(User.c.age > t).sum("age") for t in thresholds]

    def w11_update_range(self, ranges: list[tuple[int, int]]) -> int:
        with User.transaction():
            return sum(User.where(User.c.id.between(low, high)).update(age=User.c.age + 1)
                       for low, high in ranges)

    def w15_grouped_count(self, thresholds: list[int]) -> list[dict[int, int]]:
        with User.transaction():
            return [{row["age"]: row["n"] for row in User.where(User.c.age > t)
                     .select("age", n=sa.func.count()).group_by("age").rows()}
                    for t in thresholds]

    def w12_upsert(self, rows: list[dict[str, Any]]) -> int:
        with User.transaction():
            for row in rows:
                User.insert_or_update(row, conflict_keys=[UPSERT_KEY])
        return len(rows)

    def w13_to_dict(self) -> list[dict[str, Any]]:
        with User.transaction():
            return [u.to_dict() for u in User.all()]

    def w14_lazy(self) -> tuple[list[Any], list[list[Any]]]:
        with User.transaction():
            found = User.all()
            return found, [u.posts() for u in found]
