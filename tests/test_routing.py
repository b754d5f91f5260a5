"""Connection switching per thread and per asyncio task, and read-only connections."""

import asyncio
import threading

import pytest

from rhosocial_ar import ConnectionManager, ReadOnlyError, get_connection
from tests.conftest import make_tables
from tests.models import User
from tests.test_records import count_statements


def where_am_i():
    return User.pluck("username")


def setup_two(db):
    make_tables(User)
    User.create(username="on-default", email="d")
    with User.using_connection("secondary"):
        make_tables(User)
        User.create(username="on-secondary", email="s")


def test_blocks_nest_and_restore_even_on_errors(db):
    setup_two(db)
    assert where_am_i() == ["on-default"]
    with User.using_connection("secondary"):
        assert where_am_i() == ["on-secondary"]
        with User.using_connection("default"):
            assert where_am_i() == ["on-default"]
        assert where_am_i() == ["on-secondary"]
        with pytest.raises(KeyError):
            with User.using_connection("default"):
                raise KeyError
        assert where_am_i() == ["on-secondary"]
        assert User.using("default").pluck("username") == ["on-default"]
    assert where_am_i() == ["on-default"]


def test_threads_switch_independently(db):
    setup_two(db)
    barrier = threading.Barrier(8)
    results: dict[int, list[list[str]]] = {}
    errors: list[BaseException] = []

    def worker(i):
        target = "secondary" if i % 2 else "default"
        try:
            seen = []
            with User.using_connection(target):
                barrier.wait(5)               # every thread is inside its block at once
                for _ in range(5):
                    seen.append(where_am_i())
            seen.append(where_am_i())         # restored after the block
            results[i] = seen
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i, seen in results.items():
        expected = ["on-secondary"] if i % 2 else ["on-default"]
        assert seen[:5] == [expected] * 5 and seen[5] == ["on-default"]
    assert len(results) == 8


def test_asyncio_tasks_switch_independently(db):
    setup_two(db)

    async def worker(i):
        target = "secondary" if i % 2 else "default"
        with User.using_connection(target):
            await asyncio.sleep(0.01)         # interleave with the other tasks
            first = where_am_i()
            await asyncio.sleep(0.01)
            second = where_am_i()
        return target, first, second, where_am_i()

    async def main():
        return await asyncio.gather(*(worker(i) for i in range(10)))

    for target, first, second, after in asyncio.run(main()):
        expected = [f"on-{target}"]
        assert first == second == expected and after == ["on-default"]


def test_writes_through_read_only_connection_send_nothing(db):
    setup_two(db)
    ConnectionManager.configure("ro", {**db.config(0), "read_only": True})
    seen = count_statements("ro")
    with User.using_connection("ro"):
        assert where_am_i() == ["on-default"]       # reads are fine
        with pytest.raises(ReadOnlyError, match="'ro' is read-only"):
            User.create(username="x", email="x")
        with pytest.raises(ReadOnlyError):
            User.where(username="on-default").update(age=3)
        with pytest.raises(ReadOnlyError):
            User.where(username="on-default").delete()
        with pytest.raises(ReadOnlyError):
            User.bulk_insert([{"username": "y", "email": "y"}])
        with pytest.raises(ReadOnlyError):
            User.insert_or_update({"username": "z", "email": "z"}, conflict_keys=["username"])
    record = User.using("ro").find_by(username="on-default")
    record.age = 9
    with pytest.raises(ReadOnlyError):
        record.save()
    with pytest.raises(ReadOnlyError):
        record.delete()
    assert all(s.lstrip().upper().startswith(("SELECT", "BEGIN")) for s in seen)
    assert User.find_by(username="on-default").age == 0
    assert get_connection("ro").read_only
