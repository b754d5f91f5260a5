"""The awaitable twins of the Core-power operations (issue 22) on each backend's async driver."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from rhosocial_ar import SavepointError
from tests.test_async import AsyncBackend, AUser, adb, arun  # noqa: F401 (a fixture)


def test_counts_aggregates_plans_and_savepoints_awaited(adb: AsyncBackend) -> None:  # noqa: F811
    async def main() -> None:
        await AUser.abulk_insert([{"name": n, "age": a} for n, a in
                                  (("ann", 30), ("bob", 30), ("cyd", 41))])
        assert await AUser.acount("age", distinct=True) == 2
        assert await AUser.where(age=30).acount("name") == 2
        totals = await AUser.aaggregate(n=sa.func.count(), top=sa.func.max(AUser.c.age))
        assert totals == {"n": 3, "top": 41}
        assert await AUser.where(age=30).aaggregate(n=sa.func.count()) == {"n": 2}
        assert "async_users" in await AUser.where(age=30).aexplain()
        assert await AUser.select("age", n=sa.func.count()).group_by("age").order_by(
            "age").arows() == [{"age": 30, "n": 2}, {"age": 41, "n": 1}]
        found = await AUser.afrom_statement(sa.select(AUser.__table__).where(AUser.c.age > 40))
        assert [u.name for u in found] == ["cyd"]
        assert [u.name for u in await AUser.where(age=41).union(AUser.where(name="ann"))
                .order_by("name").aall()] == ["ann", "cyd"]
        async with AUser.atransaction() as tx:
            await AUser.acreate(name="dee")
            assert await tx.asavepoint("mark") == "mark"
            await AUser.acreate(name="eve")
            await tx.arollback_to("mark")
            with pytest.raises(SavepointError):
                await tx.arelease("nope")
            await tx.arelease("mark")
        assert await AUser.order_by("id").apluck("name") == ["ann", "bob", "cyd", "dee"]
        users = await AUser.where(age=30).aall()
        for user in users:
            user.age = 31
        assert await AUser.abulk_update(users, ["age"]) == 2
        assert await AUser.abulk_delete(users) == 2
        assert await AUser.order_by("id").apluck("name") == ["cyd", "dee"]

    arun(adb, main)
