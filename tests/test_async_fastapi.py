"""A FastAPI app with ``async def`` endpoints and dependencies on async connections, through TestClient.

The connections are configured in the app's lifespan, on the event loop the
TestClient runs the app in, and closed there at shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi import Depends, FastAPI, HTTPException  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from rhosocial_ar import (  # noqa: E402
    ConnectionManager,
    RequestScopeMiddleware,
    Transaction,
)
from tests.test_async import APost, AsyncBackend, AUser, adb, make_tables  # noqa: F401,E402


def make_app(adb: AsyncBackend, scoped: bool) -> FastAPI:  # noqa: F811
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        adb.configure(pool_size=3, max_overflow=0)
        await make_tables()
        with AUser.using_connection("secondary"):
            await AUser.adrop_table()
            await AUser.acreate_table()
        yield
        await ConnectionManager.areset()

    app = FastAPI(lifespan=lifespan)
    if scoped:
        app.add_middleware(RequestScopeMiddleware)

    async def in_transaction() -> AsyncIterator[Transaction]:
        async with AUser.atransaction() as tx:
            yield tx

    async def on_secondary() -> AsyncIterator[None]:
        with AUser.using_connection("secondary"):
            yield

    @app.post("/users")
    async def create(name: str, fail: bool = False,
                     _: Transaction = Depends(in_transaction)) -> dict[str, Any]:  # noqa: B008
        user = await AUser.acreate(name=name)
        await APost.acreate(user_id=user.id, title=f"{name}'s first")
        if fail:
            raise HTTPException(400, "rolled back")
        return {"id": user.id}

    @app.get("/users/{user_id}")
    async def show(user_id: int) -> dict[str, Any]:
        user = await AUser.where(id=user_id).with_("posts").afirst()
        if user is None:
            raise HTTPException(404, f"no user {user_id}")
        return {"name": user.name, "posts": [p.title for p in user.posts()]}

    @app.post("/secondary/users")
    async def create_on_secondary(name: str, _: None = Depends(on_secondary)) -> dict[str, Any]:  # noqa: B008
        await AUser.acreate(name=name)
        return {"count": await AUser.acount()}

    @app.get("/counts")
    async def counts() -> dict[str, Any]:
        pools = {c.name: c.engine.pool.checkedout()  # type: ignore[attr-defined]
                 for c in ConnectionManager.connections()}
        with AUser.using_connection("secondary"):
            secondary = await AUser.acount()
        return {"default": await AUser.acount(), "secondary": secondary, "checked_out": pools}

    return app


@pytest.mark.parametrize("scoped", [True, False], ids=["scoped", "unscoped"])
def test_async_endpoints_and_dependencies(adb: AsyncBackend, scoped: bool) -> None:  # noqa: F811
    with TestClient(make_app(adb, scoped)) as client:
        ann = client.post("/users", params={"name": "ann"})
        assert ann.status_code == 200, ann.text
        assert client.post("/users", params={"name": "bob", "fail": True}).status_code == 400
        assert client.get(f"/users/{ann.json()['id']}").json() == {"name": "ann", "posts": ["ann's first"]}
        assert client.get("/users/999").status_code == 404
        assert client.post("/secondary/users", params={"name": "cy"}).json() == {"count": 1}
        assert client.get("/counts").json() == {
            "default": 1, "secondary": 1, "checked_out": {"default": 0, "secondary": 0}}
