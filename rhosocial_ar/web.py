"""One request scope per web request, for ASGI frameworks (FastAPI, Starlette, ...).

    from fastapi import Depends, FastAPI
    from rhosocial_ar import RequestScopeMiddleware, Transaction

    app = FastAPI()
    app.add_middleware(RequestScopeMiddleware)

    def in_transaction():                 # a sync yield-dependency, run in worker threads
        with Transaction() as tx:
            yield tx

    @app.post('/users')
    def create_user(name: str, tx: Transaction = Depends(in_transaction)):
        return User.create(username=name).id     # inside the dependency's transaction

Without the middleware, a block that a ``def`` dependency enters would be lost
with the worker thread's copy of the request's context, so it raises
``ContextNotShared`` before it opens. See docs/web-frameworks.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .scope import request_scope

__all__ = ["RequestScopeMiddleware"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestScopeMiddleware:
    """Runs each HTTP request and WebSocket session in its own ``request_scope()``.

    Plain ASGI, no framework needed. Add it so that it wraps the endpoints in the
    same task (outside ``BaseHTTPMiddleware``-based middleware is fine as well).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):   # lifespan: no request
            await self.app(scope, receive, send)
            return
        with request_scope():
            await self.app(scope, receive, send)
