"""The implementations under test, one module each, all with the same methods.

    impl = load('rhosocial_ar')(target)    # an Impl subclass
    impl.setup(); impl.w4_find([1, 2, 3]); impl.teardown()

``IMPLEMENTATIONS`` maps the names used on the command line to modules;
each module defines ``Impl``.
"""

from __future__ import annotations

import importlib
from typing import Any

IMPLEMENTATIONS = {
    "raw": "bench.impls.raw",
    "core": "bench.impls.core",
    "orm": "bench.impls.orm",
    "peewee": "bench.impls.pw",
    "rhosocial_ar": "bench.impls.rhosocial",
}
BASELINE = "raw"


def load(name: str) -> Any:
    """The ``Impl`` class of implementation ``name``."""
    if name not in IMPLEMENTATIONS:
        raise KeyError(f"unknown implementation {name!r}; known: {', '.join(IMPLEMENTATIONS)}")
    return importlib.import_module(IMPLEMENTATIONS[name]).Impl
