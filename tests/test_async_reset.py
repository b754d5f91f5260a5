"""A sync ``reset()`` after the event loop has closed drops async pools quietly.

Outside the bridge an async pool cannot close its connections through their
loop; aiomysql's connections, collected, would try and print "Exception
ignored ... RuntimeError: Event loop is closed", asyncpg's warn
(bridge.close_orphans closes their sockets instead).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import warnings
from typing import Any

import pytest

from rhosocial_ar import ConnectionManager
from tests.conftest import SERVER_URLS, _missing, require_backend
from tests.test_async import ASYNC_DRIVERS, AUser, async_url


@pytest.mark.parametrize("backend", ["mysql", "postgresql"])
def test_a_sync_reset_after_the_loop_closes_connections_without_loop_errors(backend: str) -> None:
    require_backend(backend)
    drivername, module = ASYNC_DRIVERS[backend]
    try:
        __import__(module)
    except ImportError as exc:
        _missing(f"ASYNC DRIVER NOT INSTALLED, {module} tests did not run: {exc}")
    url = async_url(SERVER_URLS[backend][0], drivername)

    async def main() -> None:
        ConnectionManager.reset()
        ConnectionManager.configure("default", {"url": url, "pool_size": 3})
        await AUser.acreate_table()
        await asyncio.gather(*(AUser.acount() for _ in range(3)))     # three pooled connections

    asyncio.run(main())                       # ends without areset(): the loop closes first
    unraisable: list[Any] = []
    hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ConnectionManager.reset()
            gc.collect()
    finally:
        sys.unraisablehook = hook
    assert [u.exc_value for u in unraisable] == []
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
