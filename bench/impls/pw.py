"""peewee: models on a ``DatabaseProxy``, ``db.atomic()``, ``prefetch`` for W7.

    impl = Impl(target); impl.setup()
    impl.w4_find([3, 1])      # [<User: 3>, <User: 1>] via User.get_by_id()

peewee's defaults: ``save()`` writes every column; the bulk insert is
``insert_many`` in chunks of 1,000 rows (peewee's documented idiom, one
multi-row INSERT each). W12 is ``insert().on_conflict(preserve=...)``;
W13 turns each model into a dict with ``playhouse.shortcuts.model_to_dict``
(``.dicts()`` would skip the models); W14 iterates each user's ``posts``
backref, a query per user.
"""

from __future__ import annotations

from typing import Any

import peewee
from playhouse.shortcuts import model_to_dict

from ..schema import UPSERT_KEY, UPSERT_SET
from . import base

proxy = peewee.DatabaseProxy()


class BaseModel(peewee.Model):
    class Meta:
        database = proxy


class User(BaseModel):
    name = peewee.CharField(max_length=100)
    email = peewee.CharField(max_length=255)
    age = peewee.IntegerField()
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "users"


class Post(BaseModel):
    user = peewee.ForeignKeyField(User, backref="posts", column_name="user_id")
    title = peewee.CharField(max_length=200)
    body = peewee.TextField()

    class Meta:
        table_name = "posts"


class Impl(base.Impl):
    name = "peewee"

    def setup(self) -> None:
        self.db = self.target.peewee_database()
        proxy.initialize(self.db)
        self.db.connect()
        User.select().count()

    def teardown(self) -> None:
        self.db.close()

    def posts_of(self, user: Any) -> list[Any]:
        return list(user.posts)

    def w1_create(self, rows: list[dict[str, Any]]) -> list[int]:
        ids = []
        with self.db.atomic():
            for row in rows:
                user = User(**row)
                user.save()
                ids.append(user.id)
        return ids

    def w2_bulk_insert(self, rows: list[dict[str, Any]]) -> int:
        with self.db.atomic():
            for chunk in peewee.chunked(rows, 1000):
                User.insert_many(chunk).execute()
        return len(rows)

    def w3_load_all(self) -> list[Any]:
        with self.db.atomic():
            return list(User.select())

    def w4_find(self, ids: list[int]) -> list[Any]:
        with self.db.atomic():
            return [User.get_by_id(i) for i in ids]

    def w5_query(self, thresholds: list[int]) -> list[list[Any]]:
        with self.db.atomic():
            return [list(User.select().where(User.age > t).order_by(User.id).limit(20))
                    for t in thresholds]

    def w6_update(self) -> int:
        with self.db.atomic():
            found = list(User.select())
            for user in found:
                user.age += 100
                user.save()
        return len(found)

    def w7_eager(self) -> tuple[list[Any], int]:
        with self.db.atomic():
            found = list(peewee.prefetch(User.select(), Post.select()))
            return found, sum(len(u.posts) for u in found)

    def w9_count(self, thresholds: list[int]) -> list[Any]:
        with self.db.atomic():
            return [User.select().where(User.age == t).count() for t in thresholds]

    def w10_sum(self, thresholds: list[int]) -> list[Any]:
        with self.db.atomic():
            return [User.select(peewee.fn.SUM(User.age)).where(User.age > t).scalar()
                    for t in thresholds]

    def w15_grouped_count(self, thresholds: list[int]) -> list[dict[int, int]]:
        with self.db.atomic():
            return [dict(User.select(User.age, peewee.fn.COUNT(User.id)).where(User.age > t)
                         .group_by(User.age).tuples()) for t in thresholds]

    def w11_update_range(self, ranges: list[tuple[int, int]]) -> int:
        with self.db.atomic():
            return sum(User.update(age=User.age + 1).where(User.id.between(low, high)).execute()
                       for low, high in ranges)

    def w12_upsert(self, rows: list[dict[str, Any]]) -> int:
        preserve = [getattr(User, c) for c in UPSERT_SET]
        # MySQL's ON DUPLICATE KEY names no key: peewee refuses a conflict target there
        target = [] if self.target.dialect == "mysql" else [getattr(User, UPSERT_KEY)]
        with self.db.atomic():
            for row in rows:
                User.insert(**row).on_conflict(conflict_target=target, preserve=preserve).execute()
        return len(rows)

    def w13_to_dict(self) -> list[dict[str, Any]]:
        with self.db.atomic():
            return [model_to_dict(u) for u in User.select()]

    def w14_lazy(self) -> tuple[list[Any], list[list[Any]]]:
        with self.db.atomic():
            found = list(User.select())
            return found, [list(u.posts) for u in found]
