"""docs/core.md's examples on every backend.

tests/test_docs.py runs every page on SQLite; this runs core.md again on
PostgreSQL and MariaDB too, its ``'default'`` connection configured on the
backend instead of the page's SQLite file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rhosocial_ar import ConnectionManager, registry
from tests.test_docs import DOCS, python_blocks

PAGE = "core.md"


def test_core_page_runs(backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure = ConnectionManager.configure.__func__   # type: ignore[attr-defined]

    def on_backend(cls: Any, name: Any, config: Any = None) -> None:
        if name == "default":
            config = backend.config(0)
        configure(cls, name, config)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "_metadata", {})
    monkeypatch.setattr(ConnectionManager, "configure", classmethod(on_backend))
    ConnectionManager.reset()
    namespace: dict[str, object] = {"__name__": "docs_core"}
    try:
        for line, code in python_blocks(PAGE):
            padded = "\n" * (line - 1) + code
            exec(compile(padded, str(DOCS / PAGE), "exec", dont_inherit=True), namespace)
        assert ConnectionManager.get().engine.url.get_backend_name() == backend.name
    finally:
        ConnectionManager.reset()
