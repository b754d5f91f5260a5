"""rhosocial_ar.testing, run as a user's test suite would (pytest's pytester, in a subprocess).

A user's conftest creates the tables once per session and takes ``ar_db``
for every test; afterwards the database holds none of what the tests wrote,
whether they committed or not. ``ar_create_database`` makes a throwaway
database on the server and drops it at the end of the session.
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import Backend

pytest_plugins = ["pytester"]

MODELS = '''
from typing import ClassVar

from rhosocial_ar import ActiveRecord, Field, IntegerPKMixin


class Account(IntegerPKMixin, ActiveRecord):
    __table_name__ = "plugin_accounts"
    owner: str = Field(max_length=20, unique=True)
    balance: int = 0
    committed: ClassVar[list[str]] = []

    def after_commit(self) -> None:
        Account.committed.append(self.owner)
'''

CONFTEST = '''
import pytest

from rhosocial_ar import ConnectionManager

from models import Account


@pytest.fixture(scope="session", autouse=True)
def databases():
    ConnectionManager.configure({{
        "default": {{"url": {url!r}}},
        "replica": {{"url": {url!r}, "read_only": True}},
    }})
    ConnectionManager.create_all(["default"])
    yield
    ConnectionManager.reset()


@pytest.fixture(autouse=True)
def clean(ar_db):
    Account.committed.clear()
'''

USER_TESTS = '''
import threading

import pytest
import sqlalchemy as sa

from rhosocial_ar import ConnectionManager, Transaction, TwoPhaseNotSupported, get_connection

from models import Account


def test_writes_and_commits():
    Account.create(owner="ann")                  # a transaction of its own, committed
    with Transaction():
        Account.create(owner="bob")
    assert Account.count() == 2
    assert Account.committed == ["ann", "bob"]   # after_commit ran, as in production


def test_starts_on_a_clean_slate():
    assert Account.count() == 0


def test_a_block_rolled_back_is_undone_and_the_test_goes_on():
    with pytest.raises(ZeroDivisionError), Transaction():
        Account.create(owner="cy")
        1 / 0
    Account.create(owner="dee")
    with pytest.raises(sa.exc.IntegrityError):
        Account.create(owner="dee")              # a duplicate: the database refuses it
    assert Account.pluck("owner") == ["dee"]


def test_core_statements_and_raw_sql_are_rolled_back_too():
    with get_connection().engine.begin() as connection:
        connection.execute(Account.__table__.insert(), {"owner": "eve", "balance": 1})
    assert Account.where(owner="eve").count() == 1


def test_another_thread_and_a_replica_see_the_tests_rows():
    Account.create(owner="fay")
    seen = []
    worker = threading.Thread(target=lambda: seen.append(Account.count()))
    worker.start()
    worker.join()
    assert seen == [1]
    assert Account.using("replica").count() == 1


def test_two_phase_is_refused_with_a_reason():
    with pytest.raises(TwoPhaseNotSupported):   # SQLite: none at all
        with Transaction(get_connection(), two_phase=True):
            pass
'''

THROWAWAY_CONFTEST = '''
import json

import pytest

from rhosocial_ar import ConnectionManager


@pytest.fixture(scope="session", autouse=True)
def databases(ar_create_database):
    url = ar_create_database({server!r})
    with open("created.json", "w") as out:
        json.dump(url, out)
    ConnectionManager.configure("default", {{"url": url}})
    ConnectionManager.create_all()
    yield
    ConnectionManager.reset()
'''

THROWAWAY_TESTS = '''
from models import Account


def test_one(ar_db):
    Account.create(owner="ann")
    assert Account.count() == 1


def test_two(ar_db):
    assert Account.count() == 0
'''


def run(pytester: pytest.Pytester, conftest: str, tests: str) -> pytest.RunResult:
    pytester.makepyfile(models=MODELS, conftest=conftest, test_user=tests)
    # loaded by its pytest11 entry point once installed with it; by name until then
    registered = any(e.value == "rhosocial_ar.testing" for e in entry_points(group="pytest11"))
    plugin = () if registered else ("-p", "rhosocial_ar.testing")
    # a subprocess: the user's models and connections stay out of this process
    return pytester.runpytest_subprocess(*plugin, "-p", "no:cacheprovider", "-q", timeout=300)


def test_every_test_starts_clean_and_nothing_stays(pytester: pytest.Pytester,
                                                   backend: Backend) -> None:
    result = run(pytester, CONFTEST.format(url=backend.urls[0]), USER_TESTS)
    result.assert_outcomes(passed=6)
    engine = sa.create_engine(backend.urls[0])
    try:
        with engine.connect() as connection:   # the table the session made, with no row
            count = connection.execute(sa.text("SELECT COUNT(*) FROM plugin_accounts")).scalar()
    finally:
        engine.dispose()
    assert count == 0


def test_a_throwaway_database_lives_for_the_session(pytester: pytest.Pytester,
                                                    backend: Backend) -> None:
    server = sa.make_url(backend.urls[0]).render_as_string(hide_password=False)
    result = run(pytester, THROWAWAY_CONFTEST.format(server=server), THROWAWAY_TESTS)
    result.assert_outcomes(passed=2)
    created = sa.make_url(json.loads((pytester.path / "created.json").read_text()))
    assert created.database != sa.make_url(server).database
    if backend.name == "sqlite":
        assert created.database and not Path(created.database).exists()
        return
    engine = sa.create_engine(server)
    try:
        with engine.connect() as connection:
            names = {row[0] for row in connection.execute(sa.text(
                "SELECT datname FROM pg_database" if backend.name == "postgresql"
                else "SELECT schema_name FROM information_schema.schemata"))}
    finally:
        engine.dispose()
    assert created.database not in names and sa.make_url(server).database in names


def test_the_plugin_is_registered_for_every_users_pytest() -> None:
    """Installing the package is enough: pytest finds ar_db through the pytest11 entry point."""
    found = [e for e in entry_points(group="pytest11") if e.value == "rhosocial_ar.testing"]
    assert [e.name for e in found] == ["rhosocial_ar"]
