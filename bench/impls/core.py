"""SQLAlchemy Core: Tables, ``select()``/``insert()``/``update()``, ``engine.begin()``.

    impl = Impl(target); impl.setup()
    impl.w4_find([3, 1])      # [Row(id=3, ...), Row(id=1, ...)]

Rows are SQLAlchemy ``Row`` objects. Statements that do not change are
built once per workload (as a Core user would); W5 and W8-W11 build their
statement on every call, as those workloads say. W13's dicts are
``row._asdict()``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from . import base
from .sqla import make_engine, upsert

metadata = sa.MetaData()
users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("email", sa.String(255), nullable=False),
    sa.Column("age", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
posts = sa.Table(
    "posts", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)


class Impl(base.Impl):
    name = "core"

    def setup(self) -> None:
        self.engine = make_engine(self.target)

    def teardown(self) -> None:
        self.engine.dispose()

    def posts_of(self, user: Any) -> list[Any]:
        return self._posts.get(user.id, [])

    def w1_create(self, rows: list[dict[str, Any]]) -> list[int]:
        insert = users.insert()
        ids = []
        with self.engine.begin() as conn:
            for row in rows:
                ids.append(conn.execute(insert, row).inserted_primary_key[0])
        return ids

    def w2_bulk_insert(self, rows: list[dict[str, Any]]) -> int:
        with self.engine.begin() as conn:
            conn.execute(users.insert(), rows)
        return len(rows)

    def w3_load_all(self) -> list[Any]:
        with self.engine.begin() as conn:
            return conn.execute(sa.select(users)).all()

    def w4_find(self, ids: list[int]) -> list[Any]:
        stmt = sa.select(users).where(users.c.id == sa.bindparam("id"))
        with self.engine.begin() as conn:
            return [conn.execute(stmt, {"id": i}).one() for i in ids]

    def w5_query(self, thresholds: list[int]) -> list[list[Any]]:
        pages = []
        with self.engine.begin() as conn:
            for t in thresholds:
                stmt = sa.select(users).where(users.c.age > t).order_by(users.c.id).limit(20)
                pages.append(conn.execute(stmt).all())
        return pages

    def w6_update(self) -> int:
        update = users.update().where(users.c.id == sa.bindparam("b_id")).values(
            age=sa.bindparam("b_age"))
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(users)).all()
            for row in rows:
                conn.execute(update, {"b_id": row.id, "b_age": row.age + 100})
        return len(rows)

    def w7_eager(self) -> tuple[list[Any], int]:
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(users)).all()
            ids = [u.id for u in found]
            grouped: dict[int, list[Any]] = defaultdict(list)
            for post in conn.execute(sa.select(posts).where(posts.c.user_id.in_(ids))):
                grouped[post.user_id].append(post)
        self._posts = grouped
        return found, sum(len(grouped.get(u.id, ())) for u in found)

    def w9_count(self, thresholds: list[int]) -> list[Any]:
        with self.engine.begin() as conn:
            return [conn.scalar(sa.select(sa.func.count()).select_from(users)
                                .where(users.c.age == t)) for t in thresholds]

    def w10_sum(self, thresholds: list[int]) -> list[Any]:
        with self.engine.begin() as conn:
            return [conn.scalar(sa.select(sa.func.sum(users.c.age)).where(users.c.age > t))
                    for t in thresholds]

    def w15_grouped_count(self, thresholds: list[int]) -> list[dict[int, int]]:
        with self.engine.begin() as conn:
            return [dict(conn.execute(sa.select(users.c.age, sa.func.count())
                                      .where(users.c.age > t).group_by(users.c.age)).all())
                    for t in thresholds]

    def w11_update_range(self, ranges: list[tuple[int, int]]) -> int:
        with self.engine.begin() as conn:
            return sum(conn.execute(users.update().where(users.c.id.between(low, high))
                                    .values(age=users.c.age + 1)).rowcount
                       for low, high in ranges)

    def w12_upsert(self, rows: list[dict[str, Any]]) -> int:
        stmt = upsert(users, self.target.dialect)
        with self.engine.begin() as conn:
            for row in rows:
                conn.execute(stmt, row)
        return len(rows)

    def w13_to_dict(self) -> list[dict[str, Any]]:
        with self.engine.begin() as conn:
            return [row._asdict() for row in conn.execute(sa.select(users))]

    def w14_lazy(self) -> tuple[list[Any], list[list[Any]]]:
        stmt = sa.select(posts).where(posts.c.user_id == sa.bindparam("user_id"))
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(users)).all()
            return found, [conn.execute(stmt, {"user_id": u.id}).all() for u in found]
