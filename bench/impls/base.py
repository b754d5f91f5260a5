"""What every implementation provides: one method per workload, each one transaction.

    class Impl(base.Impl):
        name = 'raw'
        def setup(self): ...                  # connect, warm up (not timed, not counted)
        def w4_find(self, ids): ...           # the timed part; returns what was loaded

The harness times exactly one call of a ``w*`` method; setup (connecting,
the first query that initialises a dialect or configures mappers) and the
conversion of input data (``prepare``) happen before, outside the timing and
the statement count.
"""

from __future__ import annotations

from typing import Any

from ..targets import Target


class Impl:
    """Base class; subclasses implement the workload methods."""

    name = ""

    def __init__(self, target: Target) -> None:
        self.target = target

    def setup(self) -> None:
        """Connect and warm up; runs before every workload, on its fresh database."""

    def teardown(self) -> None:
        """Close connections and forget engines."""

    def prepare(self, key: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """Turn a workload's input into this implementation's natural form (not timed)."""
        return args

    def value(self, obj: Any, name: str) -> Any:
        """A column of something a workload returned (for the checks)."""
        return getattr(obj, name)

    def posts_of(self, user: Any) -> list[Any]:
        """The posts W7 loaded for ``user`` (for the checks; must send no statement)."""
        raise NotImplementedError

    def w1_create(self, rows: Any) -> list[int]:
        raise NotImplementedError

    def w2_bulk_insert(self, rows: Any) -> Any:
        raise NotImplementedError

    def w3_load_all(self) -> list[Any]:
        raise NotImplementedError

    def w4_find(self, ids: list[int]) -> list[Any]:
        raise NotImplementedError

    def w5_query(self, thresholds: list[int]) -> list[list[Any]]:
        raise NotImplementedError

    def w6_update(self) -> int:
        raise NotImplementedError

    def w7_eager(self) -> tuple[list[Any], int]:
        raise NotImplementedError

    def w8_query_columns(self, thresholds: list[int]) -> list[list[Any]]:
        """W5's query; only rhosocial_ar has a second spelling of it to measure."""
        return self.w5_query(thresholds)

    def w9_count(self, thresholds: list[int]) -> list[Any]:
        raise NotImplementedError

    def w10_sum(self, thresholds: list[int]) -> list[Any]:
        raise NotImplementedError

    def w11_update_range(self, ranges: list[tuple[int, int]]) -> int:
        """Returns the rows the updates reported changed."""
        raise NotImplementedError

    def w12_upsert(self, rows: Any) -> int:
        raise NotImplementedError

    def w13_to_dict(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def w14_lazy(self) -> tuple[list[Any], list[list[Any]]]:
        """The users, and the posts of each, loaded one user at a time."""
        raise NotImplementedError

    def w15_grouped_count(self, thresholds: list[int]) -> list[dict[int, int]]:
        """Per threshold, {age: count} of the users older than it."""
        raise NotImplementedError
