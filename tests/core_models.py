"""Models and data shared by the tests of the Core-power features (tests/test_core_*.py)."""

from __future__ import annotations

from typing import ClassVar

import pytest

from rhosocial_ar import ActiveRecord, BelongsTo, Field, HasMany, IntegerPKMixin
from tests.conftest import make_tables


class Member(IntegerPKMixin, ActiveRecord):
    __table_name__ = "core_members"
    id: int | None = None
    name: str = Field(max_length=40, unique=True)
    email: str | None = Field(default=None, max_length=80)
    status: str = Field(default="active", max_length=20)
    age: int = 0
    notes: ClassVar[HasMany[Note]] = HasMany(foreign_key="member_id", inverse_of="member")


class Note(IntegerPKMixin, ActiveRecord):
    __table_name__ = "core_notes"
    id: int | None = None
    member_id: int
    title: str = Field(max_length=40)
    published: bool = False
    member: ClassVar[BelongsTo[Member]] = BelongsTo(foreign_key="member_id", inverse_of="notes")


class Pair(ActiveRecord):
    """A composite primary key."""

    __table_name__ = "core_pairs"
    left: int = Field(primary_key=True, autoincrement=False)
    right: int = Field(primary_key=True, autoincrement=False)


# name, email, status, age; then each member's notes as (title, published)
MEMBERS = [
    ("ann", "ann@x.io", "active", 31, [("a1", True), ("a2", False), ("a3", True)]),
    ("bob", "bob@x.io", "active", 17, [("b1", False)]),
    ("cyd", None, "banned", 45, []),
    ("dee", "dee@y.io", "active", 22, [("d1", True), ("d2", True)]),
    ("eve", "ann@x.io", "banned", 60, [("e1", False)]),
]


@pytest.fixture
def club(db):
    """Five members and their notes on the backend's ``default`` connection."""
    make_tables(Member, Note)
    for name, email, status, age, notes in MEMBERS:
        member = Member.create(name=name, email=email, status=status, age=age)
        Note.bulk_insert([{"member_id": member.id, "title": t, "published": p} for t, p in notes])
    return db
