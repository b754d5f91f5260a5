"""SQLAlchemy ORM, 2.x style: declarative models, ``Session``, ``select()``, ``selectinload``.

    impl = Impl(target); impl.setup()
    impl.w4_find([3, 1])      # [User(id=3), User(id=1)] via session.get()

One ``Session`` per workload, in ``session.begin()``; ``expire_on_commit``
is off so the objects stay usable after the transaction (the other
implementations' objects do too). "Save each" is ``session.flush()`` after
each change (W1, W6): the ORM would otherwise send one batched statement
at commit, which is a different workload. W2 is the ORM's bulk INSERT
(``session.execute(insert(User), rows)``). W11's updates skip session
synchronisation (the session holds no user): by default the ORM fetches
the matching keys first, a second statement per update where UPDATE has
no RETURNING (MariaDB). W12 is the ORM's upsert, the dialect's
``insert(User)`` with its conflict clause, in ``session.execute``; W13
makes each object's dict from the mapper's column attributes; W14 reads
``user.posts`` on objects fresh from the database, so each one loads.
"""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    configure_mappers,
    mapped_column,
    relationship,
    selectinload,
)

from . import base
from .sqla import make_engine, upsert


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    email: Mapped[str] = mapped_column(sa.String(255))
    age: Mapped[int]
    created_at: Mapped[datetime.datetime]
    posts: Mapped[list[Post]] = relationship(back_populates="user")


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str] = mapped_column(sa.Text)
    user: Mapped[User] = relationship(back_populates="posts")


class Impl(base.Impl):
    name = "orm"

    def setup(self) -> None:
        configure_mappers()
        self.engine = make_engine(self.target)

    def teardown(self) -> None:
        self.engine.dispose()

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def posts_of(self, user: Any) -> list[Any]:
        return list(user.posts)

    def w1_create(self, rows: list[dict[str, Any]]) -> list[int]:
        ids = []
        with self._session() as session, session.begin():
            for row in rows:
                user = User(**row)
                session.add(user)
                session.flush()
                ids.append(user.id)
        return ids

    def w2_bulk_insert(self, rows: list[dict[str, Any]]) -> int:
        with self._session() as session, session.begin():
            session.execute(sa.insert(User), rows)
        return len(rows)

    def w3_load_all(self) -> list[Any]:
        with self._session() as session, session.begin():
            return list(session.scalars(sa.select(User)).all())

    def w4_find(self, ids: list[int]) -> list[Any]:
        with self._session() as session, session.begin():
            return [session.get(User, i) for i in ids]

    def w5_query(self, thresholds: list[int]) -> list[list[Any]]:
        pages = []
        with self._session() as session, session.begin():
            for t in thresholds:
                stmt = sa.select(User).where(User.age > t).order_by(User.id).limit(20)
                pages.append(list(session.scalars(stmt).all()))
        return pages

    def w6_update(self) -> int:
        with self._session() as session, session.begin():
            found = session.scalars(sa.select(User)).all()
            for user in found:
                user.age += 100
                session.flush()
        return len(found)

    def w7_eager(self) -> tuple[list[Any], int]:
        with self._session() as session, session.begin():
            found = list(session.scalars(sa.select(User).options(selectinload(User.posts))).all())
            return found, sum(len(u.posts) for u in found)

    def w9_count(self, thresholds: list[int]) -> list[Any]:
        with self._session() as session, session.begin():
            return [session.scalar(sa.select(sa.func.count()).select_from(User)
                                   .where(User.age == t)) for t in thresholds]

    def w10_sum(self, thresholds: list[int]) -> list[Any]:
        with self._session() as session, session.begin():
            return [session.scalar(sa.select(sa.func.sum(User.age)).where(User.age > t))
                    for t in thresholds]

    def w15_grouped_count(self, thresholds: list[int]) -> list[dict[int, int]]:
        with self._session() as session, session.begin():
            return [dict(session.execute(sa.select(User.age, sa.func.count())
                                         .where(User.age > t).group_by(User.age)).all())
                    for t in thresholds]

    def w11_update_range(self, ranges: list[tuple[int, int]]) -> int:
        with self._session() as session, session.begin():
            return sum(session.execute(sa.update(User).where(User.id.between(low, high))
                                       .values(age=User.age + 1)
                                       .execution_options(synchronize_session=False)).rowcount
                       for low, high in ranges)

    def w12_upsert(self, rows: list[dict[str, Any]]) -> int:
        stmt = upsert(User, self.target.dialect)
        with self._session() as session, session.begin():
            for row in rows:
                session.execute(stmt, row)
        return len(rows)

    def w13_to_dict(self) -> list[dict[str, Any]]:
        names = [attr.key for attr in sa.inspect(User).column_attrs]
        with self._session() as session, session.begin():
            return [{name: getattr(u, name) for name in names}
                    for u in session.scalars(sa.select(User))]

    def w14_lazy(self) -> tuple[list[Any], list[list[Any]]]:
        with self._session() as session, session.begin():
            found = list(session.scalars(sa.select(User)).all())
            return found, [list(u.posts) for u in found]
