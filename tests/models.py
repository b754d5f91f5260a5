"""Models shared by the tests (their tables are created per test by ``make_tables``)."""

from __future__ import annotations

import datetime
import decimal
import enum
from typing import ClassVar

from rhosocial_ar import (
    ActiveRecord,
    Field,
    IntegerPKMixin,
    OptimisticLockMixin,
    SoftDeleteMixin,
    TimestampMixin,
)


class Status(enum.Enum):
    active = "active"
    banned = "banned"


class User(IntegerPKMixin, TimestampMixin, ActiveRecord):
    __table_name__ = "users"
    id: int | None = None
    username: str = Field(max_length=50, unique=True)
    email: str
    age: int = 0
    status: Status = Status.active
    balance: decimal.Decimal = decimal.Decimal("0")
    profile: dict | None = None


class Event(IntegerPKMixin, ActiveRecord):
    __table_name__ = "events"
    id: int | None = None
    name: str
    at: datetime.datetime
    day: datetime.date | None = None
    active: bool = True
    score: float = 0.0


class Doc(IntegerPKMixin, SoftDeleteMixin, ActiveRecord):
    __table_name__ = "docs"
    id: int | None = None
    title: str


class Account(IntegerPKMixin, OptimisticLockMixin, ActiveRecord):
    __table_name__ = "accounts"
    id: int | None = None
    owner: str
    amount: int = 0


class Stat(ActiveRecord):
    """Keyed by a natural key, for upserts."""

    __table_name__ = "stats"
    user_id: int = Field(primary_key=True, autoincrement=False)
    visits: int = 0
    label: str = ""


class Log(ActiveRecord):
    """Written by hooks; records every hook call."""

    __table_name__ = "logs"
    id: int | None = None
    message: str

    calls: ClassVar[list[str]] = []
