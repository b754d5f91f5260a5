"""One implementation in its own process: runs workloads, prints one JSON line each.

    python -m bench.child '{"impl": "raw", "target": {"dialect": "sqlite", "dir": "/tmp/b"},
                            "workloads": ["W1", "W4"], "scale": 1.0}'

For each workload: fresh seeded tables (not timed), ``impl.setup()`` (not
timed), a full garbage collection, then one timed call of the workload
method with the statement counter reset, then the checks. Garbage
collection stays enabled while timing: creating many objects is part of
what is measured. With ``"profile": DIR`` the timed call runs under
pyinstrument and its report is written to ``DIR``.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import time
import traceback
from typing import Any

from . import impls, workloads
from .counting import COUNTER
from .targets import make_target


def run_one(impl: Any, key: str, target: Any, scale: float, profile: str | None) -> dict[str, Any]:
    plan = workloads.prepare(key, target, scale)
    impl.setup()
    try:
        args = impl.prepare(key, plan.args)
        method = getattr(impl, plan.workload.method)
        profiler = _profiler() if profile else None
        gc.collect()
        COUNTER.reset()
        if profiler is not None:
            profiler.start()
        start = time.perf_counter()
        result = method(*args)
        elapsed = time.perf_counter() - start
        if profiler is not None:
            profiler.stop()
        statements, control = COUNTER.snapshot()
        problems = _statement_problems(plan, statements)
        problems += plan.check(result, impl, target)
        if COUNTER.snapshot() != (statements, control):
            problems.append(f"reading what was loaded sent {COUNTER.statements - statements} more "
                            f"statement(s) (lazy loading)")
        if profiler is not None:
            _write_profile(profiler, profile, f"{target.dialect}-{impl.name}-{key}")
    finally:
        impl.teardown()
        target.close()
    return {"impl": impl.name, "workload": key, "seconds": elapsed, "statements": statements,
            "transaction_control": control, "problems": problems}


def _statement_problems(plan: workloads.Plan, statements: int) -> list[str]:
    low, high = plan.statements
    if low <= statements <= high:
        return []
    n = workloads.size(plan.workload.base, plan.scale)
    if plan.workload.key == "W7" and statements > high:
        return [f"N+1 DETECTED: W7 sent {statements} statements for {n} users "
                f"(eager loading needs {low}..{high})"]
    want = f"{low}" if low == high else f"{low}..{high}"
    return [f"sent {statements} statements, expected {want}"]


def _profiler() -> Any:
    from pyinstrument import Profiler

    return Profiler(interval=0.0002)


def _write_profile(profiler: Any, directory: str, stem: str) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, stem + ".txt"), "w") as out:
        out.write(profiler.output_text(unicode=True, color=False, show_all=False))
    with open(os.path.join(directory, stem + ".html"), "w") as out:
        out.write(profiler.output_html())


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    target_spec = dict(spec["target"])
    scratch = None
    if target_spec["dialect"] == "sqlite" and not target_spec.get("dir"):
        scratch = tempfile.TemporaryDirectory(prefix="rhosocial_ar_bench_")
        target_spec["dir"] = scratch.name
    target = make_target(target_spec)
    impl = impls.load(spec["impl"])(target)
    status = 0
    try:
        for key in spec["workloads"]:
            try:
                record = run_one(impl, key, target, spec["scale"], spec.get("profile"))
            except Exception:
                record = {"impl": spec["impl"], "workload": key, "seconds": None,
                          "statements": None, "transaction_control": None,
                          "problems": ["crashed: " + traceback.format_exc(limit=8)]}
                status = 1
            print(json.dumps(record), flush=True)
    finally:
        if scratch is not None:
            scratch.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
