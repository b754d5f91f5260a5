"""Ready-made columns with behaviour: primary key, timestamps, soft delete, locking.

    class Post(IntegerPKMixin, TimestampMixin, SoftDeleteMixin, ActiveRecord):
        title: str

    post.delete()                 # UPDATE posts SET deleted_at=... (hidden from queries)
    Post.with_deleted().all()     # includes it
    post.restore()

The annotations are real types, not strings (no ``from __future__ import
annotations``): pydantic before 2.9 evaluates inherited string annotations in
the subclass's module, where ``datetime`` is often ``datetime.datetime``.
"""

import datetime
from typing import Any, ClassVar

from pydantic import BaseModel

from .schema import Field

__all__ = [
    "IntegerPKMixin", "OptimisticLockMixin", "SoftDeleteMixin", "TimestampMixin", "utc_now",
]


def utc_now() -> datetime.datetime:
    """Naive UTC: what DateTime columns without a time zone hold on every dialect."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class IntegerPKMixin(BaseModel):
    """An auto-incrementing integer primary key ``id``."""

    __abstract__: ClassVar[bool] = True
    id: int | None = Field(None, primary_key=True)


class TimestampMixin(BaseModel):
    """``created_at`` set on insert, ``updated_at`` on every write that changes a column.

    Both hold naive UTC datetimes.
    """

    __abstract__: ClassVar[bool] = True
    __ar_created_column__: ClassVar[str] = "created_at"
    __ar_updated_column__: ClassVar[str] = "updated_at"
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None


class SoftDeleteMixin(BaseModel):
    """``delete()`` sets ``deleted_at``; queries hide such rows unless asked."""

    __abstract__: ClassVar[bool] = True
    __ar_soft_delete_column__: ClassVar[str] = "deleted_at"
    deleted_at: datetime.datetime | None = None

    def restore(self) -> Any:
        """Undo a soft delete."""
        self.deleted_at = None
        return self.save()  # type: ignore[attr-defined]


class OptimisticLockMixin(BaseModel):
    """A ``version`` column; saving a stale copy raises ``StaleObjectError``.

    New records start at version 0; every update adds one.
    """

    __abstract__: ClassVar[bool] = True
    __ar_lock_column__: ClassVar[str] = "version"
    version: int | None = None
