"""A stale instance that lost its partitions cannot commit for them (real PostgreSQL)."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from shared import db
from shared.consumer import Fenced, check_leases, claim_leases

pytestmark = pytest.mark.integration

P0, P1 = TopicPartition("crm.purchases", 0), TopicPartition("crm.purchases", 1)


async def test_a_takeover_fences_the_previous_owner(database_url: str) -> None:
    pool = await db.create_pool(database_url, "fencing")
    await db.migrate(pool, "fencing", db.CONSUMER_MIGRATIONS)
    try:
        async with pool.acquire() as conn:
            first = await claim_leases(conn, "scoring", "instance-a", [P0, P1])
            await check_leases(conn, "scoring", "instance-a", first)  # still ours
            second = await claim_leases(conn, "scoring", "instance-b", [P1])
            assert second[P1] == first[P1] + 1
            with pytest.raises(Fenced):
                await check_leases(conn, "scoring", "instance-a", first)
            await check_leases(conn, "scoring", "instance-a", {P0: first[P0]})  # P0 kept
            await check_leases(conn, "scoring", "instance-b", second)
            again = await claim_leases(conn, "scoring", "instance-a", [P1])
            with pytest.raises(Fenced):  # an old claim of the same owner is stale too
                await check_leases(conn, "scoring", "instance-a", {P1: first[P1]})
            await check_leases(conn, "scoring", "instance-a", again)
    finally:
        await pool.close()
