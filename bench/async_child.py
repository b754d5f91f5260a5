"""One async implementation in its own process: seeds, runs the workloads, prints JSON lines.

    python -m bench.async_child '{"impl": "rhosocial_ar", "url": "postgresql://root@127.0.0.1/db",
                                  "workloads": ["A1", "A4"], "scale": 1.0, "pool": 20}'

The tables are made and seeded with psycopg2 (not timed), then the
implementation connects, warms up and runs each workload with
``async_workloads.TASKS`` tasks, checking every result. With ``"profile":
DIR`` each workload runs under cProfile, its stats written to DIR.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import traceback
from typing import Any

from . import async_impls, async_workloads, schema
from .servers import PostgresTarget


def seed(url: str, scale: float) -> None:
    target = PostgresTarget(url)
    try:
        target.ensure_database()
        target.fresh("async")
        target.seed_users(schema.user_rows(async_workloads.seeded(scale)))
        target.seed_posts(schema.post_rows(async_workloads.EAGER_USERS,
                                           async_workloads.POSTS_PER_USER))
        target.analyze()
    finally:
        target.close()


async def measure(spec: dict[str, Any]) -> list[dict[str, Any]]:
    impl = async_impls.load(spec["impl"])()
    await impl.setup(spec["url"], spec["pool"])
    records = []
    try:
        await async_workloads.warm_up(impl, spec["scale"])
        for key in spec["workloads"]:
            plan = async_workloads.prepare(key, spec["scale"])
            gc.collect()
            profiler = None
            if spec.get("profile"):
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            seconds, results = await async_workloads.run(plan, impl)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(os.path.join(spec["profile"], f"async-{impl.name}-{key}.prof"))
            records.append({"impl": impl.name, "workload": key, "seconds": seconds,
                            "problems": plan.check(results)})
    finally:
        await impl.teardown()
    return records


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    seed(spec["url"], spec["scale"])
    try:
        records = asyncio.run(measure(spec))
    except Exception:  # reported as this implementation's failure, the run goes on
        traceback.print_exc()
        return 1
    for record in records:
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
