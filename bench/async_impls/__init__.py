"""The async implementations under test, one module each, all with the same coroutines.

    impl = load('rhosocial_ar')()
    await impl.setup('postgresql://root@127.0.0.1/db', pool=20)
    await impl.find(3)          # (3, 'user3')
    await impl.teardown()

Every implementation answers the four operations of ``bench/async_workloads.py``
with the same plain values, so the harness checks them the same way:

- ``find(id)``: ``(id, name)`` of one user read as a record/object;
- ``query(age)``: the ids of ``WHERE age > ? ORDER BY id LIMIT 20``, read as records;
- ``insert(row)``: the new user's id, one INSERT in its own transaction;
- ``eager(low, high)``: ``(users, posts)`` counted from users ``low..high``
  loaded with their posts (eager loading, or the two queries it stands for).
"""

from __future__ import annotations

import importlib
from typing import Any

IMPLEMENTATIONS = {
    "asyncpg": "bench.async_impls.raw",
    "core": "bench.async_impls.core",
    "orm": "bench.async_impls.orm",
    "tortoise": "bench.async_impls.tortoise_orm",
    "rhosocial_ar": "bench.async_impls.rhosocial",
}
BASELINE = "asyncpg"
LABELS = {"asyncpg": "raw asyncpg", "core": "SQLAlchemy Core async",
          "orm": "SQLAlchemy ORM AsyncSession", "tortoise": "Tortoise ORM",
          "rhosocial_ar": "rhosocial_ar"}


def load(name: str) -> Any:
    """The ``Impl`` class of implementation ``name``."""
    return importlib.import_module(IMPLEMENTATIONS[name]).Impl


def asyncpg_url(url: str, scheme: str = "postgresql") -> str:
    """``url`` (any PostgreSQL driver) with ``scheme`` in front: 'postgresql+asyncpg', 'asyncpg'."""
    return scheme + "://" + url.split("://", 1)[1]
