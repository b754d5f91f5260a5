"""peewee: models on a ``DatabaseProxy``, ``db.atomic()``, ``prefetch`` for W7.

    impl = Impl(target); impl.setup()
    impl.w4_find([3, 1])      # [<User: 3>, <User: 1>] via User.get_by_id()

peewee's defaults: ``save()`` writes every column; the bulk insert is
``insert_many`` in chunks of 1,000 rows (peewee's documented idiom, one
multi-row INSERT each).
"""

from __future__ import annotations

from typing import Any

import peewee

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
