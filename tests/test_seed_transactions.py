"""The user's document on cross-database transactions, run on real databases.

Its sample functions run as written (imports renamed; the 2PC transfer gets
``two_phase=True`` in its two ``Transaction(...)`` calls, as API.md says).
The document leaves its models' fields out ("# 模型定义..."), so the models
are declared here, and its ``class User(ActiveRecord)`` blocks get a base
that carries the fields they use.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

import pytest

import rhosocial_ar as ar
from rhosocial_ar import ConnectionManager, Field, IntegerPKMixin, TimestampMixin
from tests.conftest import SERVER_URLS, require_backend
from tests.seeds import SEEDS, python_blocks

SEED = "000_5caaf95aad66c7e9.txt"


class SeedBase(IntegerPKMixin, TimestampMixin, ar.ActiveRecord):
    """What the seed's ``User`` needs: stands in for ActiveRecord in its class blocks."""

    __abstract__ = True
    id: int | None = None
    email: str | None = None
    name: str | None = None


class AnalyticsUserData(ar.ActiveRecord):
    __table_name__ = "analytics_user_data"
    __connection__ = "analytics"
    user_id: int = Field(primary_key=True, autoincrement=False)
    email_domain: str
    signup_date: datetime.date
    last_update: datetime.datetime | None = None


class UserAnalytics(IntegerPKMixin, ar.ActiveRecord):
    __table_name__ = "user_analytics"
    __connection__ = "analytics"
    id: int | None = None
    user_id: int | None = None
    source: str | None = Field(None, max_length=20)
    signup_date: datetime.datetime | None = None


class SyncLog(IntegerPKMixin, ar.ActiveRecord):
    __table_name__ = "sync_logs"
    __connection__ = "primary"
    id: int | None = None
    entity: str
    sync_time: datetime.datetime


class PendingTask(IntegerPKMixin, ar.ActiveRecord):
    __table_name__ = "pending_tasks"
    __connection__ = "primary"
    id: int | None = None
    task_type: str | None = None
    entity_id: int | None = None
    data: str | None = Field(None, max_length=2000)
    status: str = "pending"
    retry_count: int | None = 0
    last_error: str | None = Field(None, max_length=500)
    completed_at: datetime.datetime | None = None


class LegacyUser(ar.ActiveRecord):
    __table_name__ = "old_users"
    __connection__ = "legacy"
    id: int | None = None
    email_address: str
    first_name: str
    last_name: str
    creation_date: datetime.datetime
    migration_status: str | None = None


class ModernUser(ar.ActiveRecord):
    __table_name__ = "modern_users"
    __connection__ = "modern"
    id: int | None = Field(None, primary_key=True, autoincrement=False)
    email: str | None = None
    name: str | None = None
    created_at: datetime.datetime | None = None


def seed_block(index: int, two_phase: bool = False) -> str:
    block = python_blocks(SEED)[index]
    if two_phase:
        for name in ("from", "to"):
            old = f"{name}_tx = Transaction({name}_conn)"
            assert old in block
            block = block.replace(old, f"{name}_tx = Transaction({name}_conn, two_phase=True)")
    return block


@pytest.fixture
def seed(tmp_path, monkeypatch):
    """Run the seed's own configuration block, then add real servers."""
    if not (SEEDS / SEED).exists():
        pytest.fail(f"seed document missing: {SEEDS / SEED}")
    require_backend("postgresql")
    require_backend("mysql")
    monkeypatch.chdir(tmp_path)
    ConnectionManager.reset()
    namespace: dict[str, Any] = {"__name__": "seed_000", "datetime": datetime.datetime,
                                 "json": json, "logger": logging.getLogger("seed")}
    exec(compile(seed_block(0), SEED, "exec"), namespace)       # primary: SQLite main.db
    ConnectionManager.configure({
        "analytics": {"url": SERVER_URLS["postgresql"][1]},
        "legacy": {"url": SERVER_URLS["mysql"][0]},
        "modern": {"url": SERVER_URLS["postgresql"][0]},
    })
    namespace.update(AnalyticsUserData=AnalyticsUserData, UserAnalytics=UserAnalytics,
                     SyncLog=SyncLog, PendingTask=PendingTask, LegacyUser=LegacyUser,
                     ModernUser=ModernUser, ActiveRecord=SeedBase,
                     # imported by earlier blocks of the document
                     Transaction=ar.Transaction, get_connection=ar.get_connection)
    yield namespace
    ConnectionManager.reset()


def define(namespace: dict[str, Any], index: int) -> Any:
    """Run a block that declares ``class User(ActiveRecord)`` (its import included)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ar, "ActiveRecord", SeedBase)
        exec(compile(seed_block(index), SEED, "exec"), namespace)
    user = namespace["User"]
    for model in (user, AnalyticsUserData, UserAnalytics, SyncLog, PendingTask):
        model.drop_table()
        model.create_table()
    return user


def test_two_phase_transfer(seed):
    for model in (LegacyUser, ModernUser):
        model.drop_table()
        model.create_table()
    born = datetime.datetime(2020, 1, 2, 3, 4, 5)
    for i in (1, 2):
        LegacyUser.create(id=i, email_address=f"u{i}@old.io", first_name="Ada",
                          last_name=f"L{i}", creation_date=born)
    exec(compile(seed_block(9, two_phase=True), SEED, "exec"), seed)
    transfer = seed["transfer_user_data"]

    assert transfer(1) is True
    moved = ModernUser.find(1)
    assert (moved.email, moved.name, moved.created_at) == ("u1@old.io", "Ada L1", born)
    assert LegacyUser.find(1).migration_status == "completed"

    ModernUser.create(id=2, email="taken")     # the insert on 'modern' will fail
    assert transfer(2) is False
    assert ModernUser.find(2).email == "taken"
    assert LegacyUser.find(2).migration_status == "failed"   # both sides rolled back first
    assert transfer(99) is False                              # no such user
    assert ModernUser.count() == 2


def test_compensating_transaction(seed):
    user_model = define(seed, 1)       # `class User(ActiveRecord)` on 'primary'
    exec(compile(seed_block(10), SEED, "exec"), seed)
    create = seed["create_user_with_analytics"]
    user_id = create({"email": "a@x.io", "name": "Ann", "source": "ads"})
    assert user_model.find(user_id).email == "a@x.io"
    assert UserAnalytics.find_by(user_id=user_id).source == "ads"

    # analytics fails (source too long for its column): the user is deleted again
    assert create({"email": "b@x.io", "name": "Bob", "source": "x" * 50}) is None
    assert user_model.find_by(email="b@x.io") is None
    assert user_model.count() == 1 and UserAnalytics.count() == 1


def test_batch_sync(seed):
    user_model = define(seed, 1)
    for i in range(2500):
        user_model.create(email=f"user{i}@{'a' if i % 2 else 'b'}.io", name=f"n{i}")
    exec(compile(seed_block(6), SEED, "exec"), seed)
    seed["sync_users_to_analytics"]()
    assert AnalyticsUserData.count() == 2500
    assert AnalyticsUserData.where(email_domain="a.io").count() == 1250
    assert SyncLog.count() == 1

    changed = user_model.find(7)
    changed.email = "seven@c.io"
    changed.save()
    seed["sync_users_to_analytics"]()              # only what changed since the last sync
    assert AnalyticsUserData.find(7).email_domain == "c.io"
    assert AnalyticsUserData.count() == 2500 and SyncLog.count() == 2


def test_real_time_sync(seed):
    user_model = define(seed, 7)
    u = user_model.create(email="rt@one.io", name="rt")
    assert AnalyticsUserData.find(u.id).email_domain == "one.io"
    u.email = "rt@two.io"
    u.save()
    assert AnalyticsUserData.find(u.id).email_domain == "two.io"
    assert AnalyticsUserData.count() == 1
    u.delete()
    assert AnalyticsUserData.count() == 0


def test_event_driven_pending_tasks(seed):
    user_model = define(seed, 1)
    exec(compile(seed_block(11), SEED, "exec"), seed)
    ids = [seed["register_user"]({"email": f"p{i}@x.io", "name": f"p{i}", "source": "web"})
           for i in range(3)]
    assert user_model.count() == 3 and PendingTask.where(status="pending").count() == 3
    seed["process_pending_analytics_tasks"]()
    assert PendingTask.where(status="completed").count() == 3
    assert sorted(UserAnalytics.pluck("user_id")) == sorted(ids)

    # a task whose analytics write keeps failing is retried, then marked failed
    seed["register_user"]({"email": "bad@x.io", "name": "bad", "source": "y" * 50})
    for attempt in range(1, 6):
        seed["process_pending_analytics_tasks"]()
        bad = PendingTask.find_by(entity_id=user_model.find_by(email="bad@x.io").id)
        assert bad.retry_count == attempt and bad.last_error
    assert bad.status == "failed"
    assert UserAnalytics.count() == 3
