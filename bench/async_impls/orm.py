"""The SQLAlchemy ORM's AsyncSession: mapped classes, selectinload for the posts."""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload

from . import asyncpg_url


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    email: Mapped[str] = mapped_column(sa.String(255))
    age: Mapped[int]
    created_at: Mapped[datetime.datetime]
    posts: Mapped[list[Post]] = relationship(back_populates="user", lazy="raise")


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str] = mapped_column(sa.Text)
    user: Mapped[User] = relationship(back_populates="posts", lazy="raise")


class Impl:
    name = "orm"

    async def setup(self, url: str, pool: int) -> None:
        self.engine = create_async_engine(asyncpg_url(url, "postgresql+asyncpg"),
                                          pool_size=pool, max_overflow=0)
        self.session = async_sessionmaker(self.engine, expire_on_commit=False)

    async def teardown(self) -> None:
        await self.engine.dispose()

    async def find(self, id: int) -> tuple[int, str]:  # noqa: A002
        async with self.session() as session:
            user = await session.get_one(User, id)
        return user.id, user.name

    async def query(self, age: int) -> list[int]:
        async with self.session() as session:
            found = (await session.scalars(sa.select(User).where(User.age > age)
                                           .order_by(User.id).limit(20))).all()
        return [u.id for u in found]

    async def insert(self, row: dict[str, Any]) -> int:
        async with self.session() as session, session.begin():
            user = User(**row)
            session.add(user)
        return user.id

    async def eager(self, low: int, high: int) -> tuple[int, int]:
        async with self.session() as session:
            found = (await session.scalars(sa.select(User).where(User.id.between(low, high))
                                           .order_by(User.id).options(selectinload(User.posts)))).all()
        return len(found), sum(len(u.posts) for u in found)
