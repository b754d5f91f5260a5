"""A user's application, as an IDE and ``mypy --strict`` see it (tests/test_types.py).

Every ``assert_type`` line is checked by mypy and again when the file runs;
a ``# type: ignore[...]`` marks a line mypy must reject (strict mode reports
an ignore that is not needed).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import ClassVar

from pydantic import BaseModel, EmailStr, HttpUrl
from typing_extensions import assert_type

from rhosocial_ar import (
    ActiveRecord,
    BelongsTo,
    ConnectionManager,
    Field,
    HasMany,
    HasOne,
    IntegerPKMixin,
    Query,
    TenantModel,
    Transaction,
    TwoPhaseNotSupported,
    get_connection,
    partial_results,
    register_tenants,
    shard_of,
    tenant,
)
from rhosocial_ar.relation import Accessor
from rhosocial_ar.twophase import TwoPhaseTransaction


class Address(BaseModel):
    city: str


class User(IntegerPKMixin, ActiveRecord):
    name: str = Field(max_length=40)
    email: EmailStr
    site: HttpUrl | None = None
    address: Address | None = None
    posts: ClassVar[HasMany[Post]] = HasMany(foreign_key="user_id", inverse_of="user")
    profile: ClassVar[HasOne[Profile]] = HasOne(foreign_key="user_id")


class Post(IntegerPKMixin, ActiveRecord):
    user_id: int
    title: str
    published_at: datetime.datetime | None = None
    user: ClassVar[BelongsTo[User]] = BelongsTo(foreign_key="user_id", inverse_of="posts")


class Profile(IntegerPKMixin, ActiveRecord):
    user_id: int
    bio: str = ""


def queries() -> None:
    ann = User.create(name="ann", email="ann@example.com", address=Address(city="Lyon"))
    assert_type(ann, User)
    assert_type(User.find(ann.id), User)
    assert_type(User.find_by(name="ann"), User | None)
    assert_type(User.where(name="ann").order_by("-id").limit(5), Query[User])
    assert_type(User.where(name="ann").all(), list[User])
    assert_type(User.first(), User | None)
    assert_type(ann.name, str)
    assert_type(ann.address, Address | None)
    assert_type(ann.id, int | None)
    for batch in User.batch(100):
        assert_type(batch, list[User])


def relations() -> None:
    ann = User.create(name="ann", email="ann@example.com")
    post = Post.create(user_id=ann.id or 0, title="hello")
    Profile.create(user_id=ann.id or 0, bio="hi")
    assert_type(User.posts, HasMany[Post])
    assert_type(ann.posts, Accessor[Post, list[Post]])
    assert_type(ann.posts(), list[Post])
    assert_type(ann.posts(reload=True), list[Post])
    assert_type(ann.posts.query(), Query[Post])
    assert_type(ann.profile(), Profile | None)
    assert_type(post.user(), User | None)
    owner = post.user()
    assert owner is not None and owner.name == "ann"
    assert [p.title for p in ann.posts()] == ["hello"]


def mistakes(ann: User, post: Post) -> None:
    """Never run: each line is an error mypy must report."""
    ann.nmae  # type: ignore[attr-defined]  # a misspelling is an error, not Any
    ann.name = 3  # type: ignore[assignment]
    ann.posts().append(ann)  # type: ignore[arg-type]  # a list of Post
    post.user().title  # type: ignore[union-attr]  # User | None
    Transaction("default", two_phase=True).comit()  # type: ignore[attr-defined]  # misspelt


def transactions() -> None:
    with User.transaction() as tx:
        assert_type(tx, Transaction)
        User.create(name="bob", email="bob@example.com")
    try:
        two = Transaction(get_connection(), two_phase=True)
    except TwoPhaseNotSupported:   # SQLite; on a server: with two: ..., then these
        return
    assert_type(two, TwoPhaseTransaction)
    two.prepare()
    two.commit()


def routing() -> None:
    block = User.using_connection("default")
    assert_type(block, AbstractContextManager[None])
    with block:
        assert_type(User.count(), int)


class Ledger(IntegerPKMixin, ActiveRecord):
    __shards__ = ["default"]            # one shard is enough to check the types
    __shard_key__ = "account"
    account: str


class Note(IntegerPKMixin, TenantModel):
    text: str


def shards_and_tenants() -> None:
    Ledger.create_table()
    assert_type(Ledger.create(account="a"), Ledger)
    assert_type(shard_of(Ledger, "a"), str)
    assert_type(Ledger.on_shard("default").all(), list[Ledger])
    with partial_results() as report:
        assert_type(Ledger.count(), int)
    assert_type(report.failed, dict[str, BaseException])
    register_tenants(lambda t: "sqlite:///tenant_acme.db" if t == "acme" else None, max_open=2)
    with tenant("acme"):
        Note.create_table()
        assert_type(Note.create(text="x"), Note)


async def awaited() -> None:
    """The awaitable twins are typed as their sync forms (docs/async.md)."""
    cy = await User.acreate(name="cy", email="cy@example.com")
    assert_type(cy, User)
    assert_type(await User.afind(cy.id), User)
    assert_type(await User.afind_by(name="cy"), User | None)
    assert_type(await User.where(name="cy").order_by("-id").aall(), list[User])
    assert_type(await User.where(name="cy").afirst(), User | None)
    assert_type(await User.acount(), int)
    async for batch in User.where(name="cy").abatch(10):
        assert_type(batch, list[User])
    async with User.atransaction() as tx:
        assert_type(tx, Transaction)
        assert_type(await cy.asave(), int)
    assert_type(await cy.posts.aload(), list[Post])
    assert_type(await cy.arefresh(), User)
    await cy.adelete()


async def run_awaited() -> None:
    ConnectionManager.configure("default", {"url": "sqlite+aiosqlite:///user_app.db"})
    try:
        await awaited()
    finally:
        await ConnectionManager.areset()


def rows() -> Iterator[str]:
    for user in User.where("name LIKE ?", "%a%"):
        yield user.email


def main() -> None:
    ConnectionManager.configure("default", {"url": "sqlite:///user_app.db"})
    ConnectionManager.create_all()
    queries()
    relations()
    transactions()
    routing()
    shards_and_tenants()
    assert list(rows()) == ["ann@example.com", "ann@example.com"]
    asyncio.run(run_awaited())


if __name__ == "__main__":
    main()
