"""rhosocial_ar.testing's ar_adb: ar_db for async tests, run as a user's anyio suite would.

A user's conftest configures an async connection and creates the tables on
a loop of its own; each ``@pytest.mark.anyio`` test takes ``ar_adb`` on its
own loop; afterwards the database holds none of what the tests wrote. The
sync ``ar_db`` on an async connection names ``ar_adb``.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import entry_points

import pytest
import sqlalchemy as sa

from rhosocial_ar import ConnectionManager, get_connection
from rhosocial_ar.aio import run
from tests.test_async import AsyncBackend, adb  # noqa: F401  (the fixture)
from tests.test_testing_plugin import MODELS

pytest_plugins = ["pytester"]

CONFTEST = '''
import asyncio

import pytest
import sqlalchemy as sa

from rhosocial_ar import ConnectionManager, get_connection
from rhosocial_ar.aio import run

from models import Account


@pytest.fixture(scope="session", autouse=True)
def databases():
    ConnectionManager.configure({{"default": {{"url": {url!r}}}}})
    asyncio.run(ConnectionManager.acreate_all())     # its connection stays, on a closed loop
    yield
    ConnectionManager.reset()


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def clean():
    Account.committed.clear()
'''

USER_TESTS = '''
import asyncio

import pytest
import sqlalchemy as sa

from rhosocial_ar import ConfigurationError, Transaction, TwoPhaseNotSupported, get_connection

from models import Account


@pytest.mark.anyio
async def test_writes_and_commits(ar_adb):
    await Account.acreate(owner="ann")           # a transaction of its own, committed
    async with Transaction():
        await Account.acreate(owner="bob")
    assert await Account.acount() == 2
    assert Account.committed == ["ann", "bob"]   # after_commit ran, as in production


@pytest.mark.anyio
async def test_starts_on_a_clean_slate(ar_adb):
    assert await Account.acount() == 0


@pytest.mark.anyio
async def test_rolled_back_blocks_refused_rows_and_tasks_sharing_the_session(ar_adb):
    with pytest.raises(ZeroDivisionError):
        async with Transaction():
            await Account.acreate(owner="cy")
            1 / 0
    await asyncio.gather(*(Account.acreate(owner=f"t{i}") for i in range(3)))
    with pytest.raises(sa.exc.IntegrityError):
        await Account.acreate(owner="t0")        # a duplicate: the database refuses it
    assert sorted(await Account.apluck("owner")) == ["t0", "t1", "t2"]


@pytest.mark.anyio
async def test_two_phase_is_refused_with_a_reason(ar_adb):
    with pytest.raises(TwoPhaseNotSupported):
        async with Transaction(get_connection(), two_phase=True):
            pass


def test_the_sync_fixture_names_the_async_one(request):
    with pytest.raises(ConfigurationError, match="ar_adb"):
        request.getfixturevalue("ar_db")
'''


def test_every_async_test_starts_clean_and_nothing_stays(pytester: pytest.Pytester,
                                                         adb: AsyncBackend) -> None:  # noqa: F811
    pytest.importorskip("anyio")
    pytester.makepyfile(models=MODELS, conftest=CONFTEST.format(url=adb.urls[0]),
                        test_user=USER_TESTS)
    registered = any(e.value == "rhosocial_ar.testing" for e in entry_points(group="pytest11"))
    plugin = () if registered else ("-p", "rhosocial_ar.testing")
    result = pytester.runpytest_subprocess(*plugin, "-p", "no:cacheprovider", "-q", timeout=300)
    result.assert_outcomes(passed=5)
    assert "Event loop is closed" not in result.stdout.str() + result.stderr.str()

    def rows() -> int:
        with get_connection().engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT COUNT(*) FROM plugin_accounts")).scalar_one())

    async def count() -> int:
        ConnectionManager.reset()
        ConnectionManager.configure("default", {"url": adb.urls[0]})
        try:
            return await run(rows)
        finally:
            await ConnectionManager.areset()

    assert asyncio.run(count()) == 0       # the table the session made, with no row
