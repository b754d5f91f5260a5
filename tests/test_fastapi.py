"""using_connection() and Transaction() blocks in FastAPI dependencies, through a real app.

(``Depends(...)`` in argument defaults is FastAPI's idiom: B008 does not apply.)

FastAPI runs a ``def`` dependency's setup and teardown, and a ``def`` endpoint,
in worker threads, each with a copy of the request's context; ``async def``
ones run in the request's task. Every combination must route the endpoint's
statements into the dependency's block, with RequestScopeMiddleware installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

fastapi = pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi import Depends, FastAPI, HTTPException  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from rhosocial_ar import ARError, RequestScopeMiddleware, Transaction  # noqa: E402
from rhosocial_ar.transaction import current_frame  # noqa: E402
from tests.conftest import make_tables  # noqa: E402
from tests.models import User  # noqa: E402

KINDS = ["def", "async def"]


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


@pytest.mark.parametrize("endpoint_kind", KINDS)
@pytest.mark.parametrize("dependency_kind", KINDS)
def test_a_transaction_dependency_holds_the_endpoints_writes(db, dependency_kind, endpoint_kind):
    make_tables(User)
    app = app_with(dependency(dependency_kind, Transaction), create_user, endpoint_kind)
    with TestClient(app) as client:
        response = client.post("/users", params={"name": "ann"})
        assert response.status_code == 200, response.text
        assert response.json()["in_transaction"] is True
        assert usernames() == ["ann"]                  # committed at the dependency's exit

        response = client.post("/users", params={"name": "bob", "fail": True})
        assert response.status_code == 409
    assert usernames() == ["ann"]                      # rolled back with the dependency's block


@pytest.mark.parametrize("endpoint_kind", KINDS)
@pytest.mark.parametrize("dependency_kind", KINDS)
def test_a_using_connection_dependency_routes_the_endpoint(db, dependency_kind, endpoint_kind):
    tables_on_both()
    app = app_with(dependency(dependency_kind, lambda: User.using_connection("secondary")),
                   create_user, endpoint_kind)
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


def test_without_the_middleware_a_sync_dependencys_block_fails_clearly(db):
    """Without a request scope the copies cannot share the block: an ARError, not a ValueError.

    The dependency's transaction is rolled back, nothing of it is committed.
    """
    make_tables(User)
    opened: list[Transaction] = []

    def in_transaction() -> Iterator[None]:
        with Transaction() as tx:
            opened.append(tx)
            User.create(username="in-dependency", email="e")
            yield

    app = app_with(in_transaction, lambda name, fail: None, "def", middleware=False)
    with TestClient(app, raise_server_exceptions=True) as client:
        with pytest.raises(ARError, match="request_scope"):
            client.post("/users", params={"name": "ann"})
    assert usernames() == []
    assert "closed" in repr(opened[0])
