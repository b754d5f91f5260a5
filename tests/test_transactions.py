"""Local transactions: blocks, savepoints, isolation, context separation."""

import asyncio
import datetime
import threading

import pytest

from rhosocial_ar import ARError, ConfigurationError, Transaction, get_connection
from tests.conftest import make_tables
from tests.models import Account, User
from tests.test_records import count_statements


def test_commit_and_rollback(db):
    make_tables(User)
    with User.transaction():
        User.create(username="a", email="a")
    with pytest.raises(KeyError):
        with User.transaction():
            User.create(username="b", email="b")
            raise KeyError("boom")
    assert User.pluck("username") == ["a"]


def test_a_rolled_back_insert_leaves_each_record_as_it_was_built(db):
    make_tables(User, Account)
    stamped = datetime.datetime(2020, 1, 2, 3, 4, 5)
    plain = User(username="plain", email="p")                       # every bookkeeping column None
    keyed = User(id=500, username="keyed", email="k")               # a key of its own
    dated = User(username="dated", email="d", created_at=stamped)   # a stamp of its own
    locked = Account(owner="o")                                     # version set by the INSERT
    with pytest.raises(RuntimeError):
        with User.transaction():
            for record in (plain, keyed, dated, locked):
                record.save()
            assert plain.id is not None and plain.created_at is not None
            assert locked.version == 0
            raise RuntimeError
    assert all(r.is_new_record for r in (plain, keyed, dated, locked))
    assert (plain.id, plain.created_at, plain.updated_at) == (None, None, None)
    assert (keyed.id, keyed.created_at) == (500, None)
    assert (dated.id, dated.created_at, dated.updated_at) == (None, stamped, None)
    assert (locked.id, locked.version) == (None, None)
    assert User.count() == 0 and Account.count() == 0
    plain.save()                                                    # and they save again as new
    assert User.pluck("username") == ["plain"] and plain.created_at is not None


def test_every_model_on_the_connection_joins_the_block(db):
    make_tables(User, Account)
    sql = count_statements()
    with pytest.raises(RuntimeError):
        with Transaction(get_connection("default")):
            User.create(username="a", email="a")
            Account.create(owner="a", amount=1)
            User.where(username="a").update(age=3)
            Account.where(owner="a").delete()
            assert User.find_by(username="a").age == 3     # reads see the open work
            raise RuntimeError
    begins = [s for s in sql if s.strip().upper().startswith(("BEGIN", "SAVEPOINT"))]
    assert len(begins) <= 1          # one transaction, no savepoints (SQLite's BEGIN is visible)
    assert User.count() == 0 and Account.count() == 0


def test_other_connections_are_not_part_of_it(db):
    make_tables(User)
    with User.using_connection("secondary"):
        make_tables(User)
    with pytest.raises(RuntimeError):
        with User.transaction():
            User.create(username="here", email="h")
            User.using("secondary").where(username="x").count()
            with User.using_connection("secondary"):
                User.create(username="there", email="t")   # its own, committed at once
            raise RuntimeError
    assert User.count() == 0
    assert User.using("secondary").pluck("username") == ["there"]


def test_nested_blocks_are_savepoints(db):
    make_tables(User)
    with User.transaction():
        User.create(username="outer", email="o")
        with pytest.raises(ValueError):
            with User.transaction():
                User.create(username="inner", email="i")
                raise ValueError
        with User.transaction():
            User.create(username="inner2", email="i2")
    assert sorted(User.pluck("username")) == ["inner2", "outer"]


def test_decorator_and_isolation_level(db):
    make_tables(User)
    level = "SERIALIZABLE"

    @Transaction(get_connection(), isolation_level=level)
    def register(name):
        User.create(username=name, email=name)
        with get_connection().engine.connect():
            pass
        return name

    assert register("deco") == "deco"
    assert User.count() == 1
    with User.transaction(isolation_level="read committed" if db.is_server else "serializable") as tx:
        seen = tx.sa_connection.get_isolation_level()
        assert seen in ("READ COMMITTED", "SERIALIZABLE")
    with pytest.raises(ConfigurationError):
        Transaction(get_connection(), isolation_level="SOMETIMES")
    with pytest.raises(ConfigurationError):
        with User.transaction():
            with User.transaction(isolation_level="SERIALIZABLE"):
                pass
    with pytest.raises(ConfigurationError):
        Transaction(42)


def test_a_transaction_object_cannot_be_entered_twice(db):
    make_tables(User)
    tx = User.transaction()
    with tx:
        with pytest.raises(ARError):
            tx.__enter__()
    with tx:                       # but can be reused once closed
        User.create(username="again", email="a")
    assert User.count() == 1


def test_threads_have_their_own_transactions(db):
    make_tables(User)
    inside, done = threading.Event(), threading.Event()
    seen_by_other: list[int] = []

    def other():
        inside.wait(5)
        seen_by_other.append(User.count())          # not in our transaction
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with User.transaction():
        User.create(username="hidden", email="h")
        inside.set()
        done.wait(5)
    t.join()
    assert seen_by_other == [0]
    assert User.count() == 1


@pytest.mark.backends("postgresql", "mysql")  # SQLite allows one writer at a time
def test_asyncio_tasks_have_their_own_transactions(db):
    make_tables(User)

    async def worker(name, fail):
        await asyncio.sleep(0)
        with User.transaction():
            User.create(username=name, email=name)
            await asyncio.sleep(0.01)                # the other task runs meanwhile
            if fail:
                raise RuntimeError(name)

    async def main():
        return await asyncio.gather(worker("keep", False), worker("drop", True),
                                    return_exceptions=True)

    results = asyncio.run(main())
    assert results[0] is None and isinstance(results[1], RuntimeError)
    assert User.pluck("username") == ["keep"]


@pytest.mark.backends("sqlite")
def test_sqlite_begins_without_an_engine_listener(db):
    """BEGIN comes from the dialect, so statements need not look for listeners; a read
    outside a transaction (no BEGIN) leaves nothing behind for the next transaction."""
    make_tables(User)
    engine = get_connection().engine
    assert not engine.dispatch.begin                 # no "begin" listener on the engine
    assert User.count() == 0                         # a read: no BEGIN, autocommit
    with pytest.raises(RuntimeError), Transaction(get_connection()):
        User.create(username="gone", email="x")
        raise RuntimeError("roll back")
    assert User.count() == 0                         # it was a real transaction
    with Transaction(get_connection()):
        User.create(username="kept", email="x")
        with pytest.raises(RuntimeError), Transaction(get_connection()):   # a savepoint
            User.create(username="inner", email="x")
            raise RuntimeError("roll back the savepoint")
    assert User.pluck("username") == ["kept"]
