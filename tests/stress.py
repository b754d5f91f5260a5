"""Shared by the load and fault tests: their figures, their durations, their threads.

    report(operations=1200, threads=16, seconds=8.0)   # prints and records one line
    @pytest.mark.parametrize("seconds", durations(8))  # 8 s in CI, minutes under --soak

Every test of tests/test_load.py and tests/test_faults.py reports what it did
in figures; ``report()`` prints them (``pytest -s`` shows them, and the
captured output of a failing test does) and appends them as one JSON line to
``RHOSOCIAL_AR_FIGURES`` (default ``$TMPDIR/rhosocial_ar_figures.jsonl``).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIGURES_FILE = Path(os.environ.get("RHOSOCIAL_AR_FIGURES")
                    or Path(tempfile.gettempdir()) / "rhosocial_ar_figures.jsonl")
SOAK_SECONDS = float(os.environ.get("RHOSOCIAL_AR_SOAK_SECONDS") or 180)


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def report(**figures: Any) -> str:
    """Print what the running test did, in figures, and append them to FIGURES_FILE."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
    line = f"FIGURES {test}: " + ", ".join(f"{k}={_text(v)}" for k, v in figures.items())
    print(line, flush=True)
    with FIGURES_FILE.open("a") as out:
        out.write(json.dumps({"test": test, "at": time.time(), **figures}, default=str) + "\n")
    return line


def durations(short: float, long: float | None = None) -> list[Any]:
    """Parameters for a bounded run: ``short`` seconds always, a long one only under ``--soak``."""
    return [pytest.param(short, id="short"),
            pytest.param(long or SOAK_SECONDS, id="soak", marks=pytest.mark.soak)]


class Crew:
    """Threads running ``work(index)``; every exception is kept, every thread is joined."""

    def __init__(self, count: int, work: Callable[[int], Any], name: str = "worker") -> None:
        self.errors: list[tuple[int, BaseException]] = []
        self.results: dict[int, Any] = {}
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i, work), name=f"{name}-{i}",
                                         daemon=True) for i in range(count)]

    def _run(self, index: int, work: Callable[[int], Any]) -> None:
        try:
            result = work(index)
        except BaseException as exc:  # reported by raise_first()
            with self._lock:
                self.errors.append((index, exc))
        else:
            with self._lock:
                self.results[index] = result

    def start(self) -> Crew:
        for thread in self.threads:
            thread.start()
        return self

    def join(self, timeout: float) -> None:
        """Join every thread within ``timeout`` seconds in all; a thread still running is a hang."""
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        hung = [t.name for t in self.threads if t.is_alive()]
        assert not hung, f"threads still running after {timeout} s (a hang): {hung}"

    def raise_first(self) -> None:
        if self.errors:
            index, exc = self.errors[0]
            raise AssertionError(
                f"{len(self.errors)} thread(s) failed; thread {index}: {type(exc).__name__}: {exc}"
            ) from exc
