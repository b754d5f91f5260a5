"""Field and the column mixins, under the seeds' module spelling.

    from rhosocial_ar.field import IntegerPKMixin, TimestampMixin
"""

from .mixins import IntegerPKMixin, OptimisticLockMixin, SoftDeleteMixin, TimestampMixin
from .schema import Field

__all__ = ["Field", "IntegerPKMixin", "OptimisticLockMixin", "SoftDeleteMixin", "TimestampMixin"]
