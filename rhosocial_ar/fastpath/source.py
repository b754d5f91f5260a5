"""Functions written out as Python source for one statement or one column list.

    build = define("def f(x):\\n    return x + 1\\n", "f", {}, "arguments users")

The source is registered with ``linecache`` under a name made from its
text, so a traceback through generated code shows the line that failed,
and defining the same source again reuses the entry instead of adding one.
"""

from __future__ import annotations

import hashlib
import linecache
from collections.abc import Callable
from typing import Any

__all__ = ["define"]


def define(source: str, name: str, namespace: dict[str, Any], what: str) -> Callable[..., Any]:
    """Compile ``source`` in ``namespace`` and return its function ``name``."""
    digest = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()[:12]
    filename = f"<rhosocial_ar {what} {digest}>"
    # mtime None: linecache.checkcache() keeps the entry, as for a module's loader
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102
    return namespace[name]  # type: ignore[no-any-return]
