"""using_connection() and Transaction() blocks in FastAPI dependencies, through a real app.

(``Depends(...)`` in argument defaults is FastAPI's idiom: B008 does not apply.)

FastAPI runs a ``def`` dependency's setup and teardown, and a ``def`` endpoint,
in worker threads, each with a copy of the request's context; ``async def``
ones run in the request's task. Every combination must route the endpoint's
statements into the dependency's block, with RequestScopeMiddleware installed;
without it, ``async def`` dependencies still do, and a ``def`` dependency's
block raises ContextNotShared before any statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import copy_context
from typing import Any

import pytest
import sqlalchemy as sa

fastapi = pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi import Depends, FastAPI, HTTPException  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from rhosocial_ar import (  # noqa: E402
    ContextNotShared,
    RequestScopeMiddleware,
    Transaction,
    get_connection,
    two_phase,
)
from rhosocial_ar.transaction import current_frame  # noqa: E402
from tests.conftest import make_tables  # noqa: E402
from tests.models import User  # noqa: E402

KINDS = ["def", "async def"]
# (dependency kind, RequestScopeMiddleware installed): where a dependency's block holds
KEPT = [("def", True), ("async def", True), ("async def", False)]
KEPT_IDS = ["def-scoped", "async-scoped", "async-unscoped"]
BLOCKS: dict[str, Callable[[], Any]] = {
    "using_connection": lambda: User.using_connection("secondary"),
    "Transaction": Transaction,
}


def dependency(kind: str, block: Callable[[], Any]) -> Callable[..., Any]:
    """A yield-dependency of that kind (SQLModel's get_session shape) around ``block()``."""
    if kind == "def":
        def sync_dependency() -> Iterator[Any]:
            with block() as value:
                yield value
        return sync_dependency

    async def async_dependency() -> Any:
        with block() as value:
            yield value
    return async_dependency


def endpoint(kind: str, work: Callable[..., Any], dep: Callable[..., Any]) -> Callable[..., Any]:
    if kind == "def":
        def sync_endpoint(name: str, fail: bool = False, _: Any = Depends(dep)) -> Any:  # noqa: B008
            return work(name, fail)
        return sync_endpoint

    async def async_endpoint(name: str, fail: bool = False,
                             _: Any = Depends(dep)) -> Any:  # noqa: B008
        return work(name, fail)
    return async_endpoint


def create_user(name: str, fail: bool) -> dict[str, Any]:
    user = User.create(username=name, email=f"{name}@x.io")
    in_transaction = current_frame("default") is not None
    if fail:
        raise HTTPException(status_code=409, detail="rolled back")
    return {"id": user.id, "in_transaction": in_transaction, "seen": User.pluck("username")}


def scoped_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(RequestScopeMiddleware)
    return app


def app_with(dep: Callable[..., Any], work: Callable[..., Any], endpoint_kind: str,
             middleware: bool = True) -> FastAPI:
    app = scoped_app() if middleware else FastAPI()
    app.post("/users")(endpoint(endpoint_kind, work, dep))
    return app


def tables_on_both() -> None:
    """The users table on 'default' and on 'secondary'."""
    make_tables(User)
    with User.using_connection("secondary"):
        make_tables(User)


def usernames(connection: str = "default") -> list[str]:
    return sorted(User.using(connection).pluck("username"))


@contextmanager
def checkouts() -> Iterator[list[str]]:
    """The connections taken from the pools of 'default' and 'secondary' in the block."""
    taken: list[str] = []
    listeners = []
    for name in ("default", "secondary"):
        engine = get_connection(name).engine

        def listener(*_: Any, name: str = name) -> None:
            taken.append(name)
        sa.event.listen(engine, "checkout", listener)
        listeners.append((engine, listener))
    try:
        yield taken
    finally:
        for engine, listener in listeners:
            sa.event.remove(engine, "checkout", listener)


@pytest.mark.parametrize("endpoint_kind", KINDS)
@pytest.mark.parametrize(("dependency_kind", "middleware"), KEPT, ids=KEPT_IDS)
def test_a_transaction_dependency_holds_the_endpoints_writes(db, dependency_kind, middleware,
                                                             endpoint_kind):
    make_tables(User)
    app = app_with(dependency(dependency_kind, Transaction), create_user, endpoint_kind, middleware)
    with TestClient(app) as client:
        response = client.post("/users", params={"name": "ann"})
        assert response.status_code == 200, response.text
        assert response.json()["in_transaction"] is True
        assert usernames() == ["ann"]                  # committed at the dependency's exit

        response = client.post("/users", params={"name": "bob", "fail": True})
        assert response.status_code == 409
    assert usernames() == ["ann"]                      # rolled back with the dependency's block


@pytest.mark.parametrize("endpoint_kind", KINDS)
@pytest.mark.parametrize(("dependency_kind", "middleware"), KEPT, ids=KEPT_IDS)
def test_a_using_connection_dependency_routes_the_endpoint(db, dependency_kind, middleware,
                                                           endpoint_kind):
    tables_on_both()
    app = app_with(dependency(dependency_kind, BLOCKS["using_connection"]), create_user,
                   endpoint_kind, middleware)
    with TestClient(app) as client:
        for name in ("ann", "bob"):
            response = client.post("/users", params={"name": name})
            assert response.status_code == 200, response.text
        assert response.json()["seen"] == ["ann", "bob"]   # reads go there too
    assert usernames("secondary") == ["ann", "bob"]
    assert usernames("default") == []                   # nothing went elsewhere


@pytest.mark.parametrize("endpoint_kind", KINDS)
def test_sync_and_async_dependencies_nest(db, endpoint_kind):
    """A sync using_connection() dependency under an async transaction dependency."""
    tables_on_both()
    route = dependency("def", lambda: User.using_connection("secondary"))

    async def in_transaction(_: Any = Depends(route)) -> Any:  # noqa: B008
        with User.transaction() as tx:               # the model's connection: secondary here
            yield tx

    def work(name: str, fail: bool) -> dict[str, Any]:
        User.create(username=name, email="e")
        assert current_frame("secondary") is not None and current_frame("default") is None
        if fail:
            raise HTTPException(status_code=409)
        return {}

    app = app_with(in_transaction, work, endpoint_kind)
    with TestClient(app) as client:
        assert client.post("/users", params={"name": "ann"}).status_code == 200
        assert client.post("/users", params={"name": "bob", "fail": True}).status_code == 409
    assert usernames("secondary") == ["ann"] and usernames("default") == []


def test_each_request_has_its_own_scope(db):
    """A request's blocks end with it: the next request routes by the model again."""
    tables_on_both()
    app = scoped_app()
    route = dependency("def", lambda: User.using_connection("secondary"))

    @app.post("/routed")
    def routed(name: str, _: Any = Depends(route)) -> None:  # noqa: B008
        User.create(username=name, email="e")

    @app.post("/plain")
    def plain(name: str) -> None:
        User.create(username=name, email="e")

    with TestClient(app) as client:
        assert client.post("/routed", params={"name": "ann"}).status_code == 200
        assert client.post("/plain", params={"name": "bob"}).status_code == 200
    assert usernames("secondary") == ["ann"] and usernames("default") == ["bob"]


def test_tasks_a_request_starts_keep_their_own_blocks(db):
    """Inside a scope, blocks that concurrent tasks open stay theirs, as outside one."""
    tables_on_both()
    app = scoped_app()

    @app.post("/fan-out")
    async def fan_out() -> dict[str, Any]:
        both_inside = asyncio.Event()
        inside: list[str] = []

        async def worker(name: str, connection: str) -> list[str]:
            with User.using_connection(connection):
                inside.append(name)
                if len(inside) == 2:
                    both_inside.set()
                await asyncio.wait_for(both_inside.wait(), 5)   # both blocks open at once
                User.create(username=name, email="e")
                return User.pluck("username")

        seen = await asyncio.gather(worker("on-secondary", "secondary"), worker("on-default", "default"))
        return {"seen": seen}

    with TestClient(app) as client:
        response = client.post("/fan-out")
        assert response.status_code == 200, response.text
        assert response.json()["seen"] == [["on-secondary"], ["on-default"]]
    assert usernames("secondary") == ["on-secondary"] and usernames("default") == ["on-default"]


@pytest.mark.parametrize("endpoint_kind", KINDS)
@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_without_the_middleware_a_def_dependencys_block_fails_before_any_statement(db, block,
                                                                                   endpoint_kind):
    """Its entry is the whole task of a worker thread, in a context copy thrown away after.

    Before, the endpoint's write went to 'default', outside the block, and only the
    dependency's exit raised. Now neither the block nor the endpoint runs, and no
    connection is even taken from a pool.
    """
    tables_on_both()
    ran: list[str] = []

    def in_block() -> Iterator[None]:
        with BLOCKS[block]():
            ran.append("dependency")
            User.create(username="in-dependency", email="e")
            yield

    def work(name: str, fail: bool) -> dict[str, Any]:
        ran.append("endpoint")
        return create_user(name, fail)

    app = app_with(in_block, work, endpoint_kind, middleware=False)
    with TestClient(app) as client, checkouts() as taken:
        with pytest.raises(ContextNotShared, match=r"RequestScopeMiddleware.*`async def`"):
            client.post("/users", params={"name": "ann"})
    assert taken == [] and ran == []
    assert usernames("default") == [] and usernames("secondary") == []


@pytest.mark.backends("postgresql", "mysql")
def test_without_the_middleware_a_def_dependencys_two_phase_block_fails(db):
    """two_phase() enters a transaction per connection: the first refuses, none is left open."""
    tables_on_both()

    def across() -> Iterator[None]:
        with two_phase("default", "secondary"):
            User.create(username="in-dependency", email="e")
            yield

    app = app_with(across, create_user, "def", middleware=False)
    with TestClient(app) as client:
        with pytest.raises(ContextNotShared, match="RequestScopeMiddleware"):
            client.post("/users", params={"name": "ann"})
    assert usernames("default") == [] and usernames("secondary") == []
    pools = [get_connection(n).engine.pool for n in ("default", "secondary")]
    assert [p.checkedout() for p in pools if isinstance(p, sa.pool.QueuePool)] == [0, 0]


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_without_the_middleware_a_def_endpoint_keeps_its_own_blocks(db, block):
    """The endpoint's frame holds the block it opens: nothing is shared, nothing is refused."""
    tables_on_both()
    app = FastAPI()

    @app.post("/users")
    def add(name: str, fail: bool = False) -> dict[str, Any]:
        with BLOCKS[block]():
            return create_user(name, fail)

    with TestClient(app) as client:
        response = client.post("/users", params={"name": "ann"})
        assert response.status_code == 200, response.text
        assert client.post("/users", params={"name": "bob", "fail": True}).status_code == 409
    if block == "Transaction":
        assert response.json()["in_transaction"] is True
        assert usernames("default") == ["ann"] and usernames("secondary") == []   # bob rolled back
    else:
        assert usernames("secondary") == ["ann", "bob"] and usernames("default") == []


def test_worker_threads_outside_fastapi_follow_the_same_rule(db):
    """A block's entry as a pool's whole task is refused; a function that holds its block runs."""
    tables_on_both()

    def holds(name: str) -> None:
        with User.using_connection("secondary"):
            User.create(username=name, email="e")

    async def main() -> None:
        with pytest.raises(ContextNotShared):
            await asyncio.to_thread(User.using_connection("secondary").__enter__)
        await asyncio.to_thread(holds, "to-thread")

    asyncio.run(main())
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(ContextNotShared):
            pool.submit(Transaction("secondary").__enter__).result()
        pool.submit(holds, "pool").result()
    assert usernames("secondary") == ["pool", "to-thread"] and usernames("default") == []


def test_a_block_closed_in_another_copy_is_rolled_back(db):
    """Entered in one copy by hand, closed in another: ContextNotShared, and nothing commits."""
    make_tables(User)
    tx = Transaction()
    entered = copy_context()
    entered.run(tx.__enter__)                 # by hand, not a worker thread: not refused here
    entered.run(User.create, username="in-block", email="e")
    with pytest.raises(ContextNotShared, match="request_scope"):
        copy_context().run(tx.__exit__, None, None, None)
    assert usernames() == []
    assert "closed" in repr(tx)


@pytest.mark.backends("postgresql", "mysql")
def test_a_two_phase_branch_entered_as_a_pool_task_sends_nothing(db):
    """Refused before its XA START / BEGIN: no branch begun, no connection taken."""
    tables_on_both()
    branch = Transaction("secondary", two_phase=True)
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(ContextNotShared):
            pool.submit(branch.__enter__).result()
    assert branch.state == "new"
    pool_ = get_connection("secondary").engine.pool
    if isinstance(pool_, sa.pool.QueuePool):
        assert pool_.checkedout() == 0
