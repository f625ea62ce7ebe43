"""A worker's claim takes its batch by walking the consumer's ready deliveries in order, however
large the backlog, even on a table the planner has no statistics for (a fresh install, or a
server whose autovacuum is off): what it reads does not grow with the backlog."""

from __future__ import annotations

import json

import asyncpg

from services.common.db.engine import libpq_url
from services.common.queue import QueueTuning
from services.common.queue.worker import _Statements
from tests.conftest import migrated_database

CONSUMER = "plans.backlog"


async def _blocks_read_by_a_claim(server_url: str, backlog: int) -> tuple[int, int]:
    """(blocks read, deliveries taken) by one claim of 50 on a never-analysed table holding
    `backlog` ready deliveries of the consumer (the claim is rolled back)."""
    async with migrated_database(server_url, "clinic_plan") as url:
        conn = await asyncpg.connect(libpq_url(url))
        try:
            await conn.execute(
                "INSERT INTO queue.events (id, type, version, occurred_at, subject, payload) "
                "SELECT gen_random_uuid(), 'plans.tick', 1, now(), gen_random_uuid(), '{}' "
                "FROM generate_series(1, $1)",
                backlog,
            )
            await conn.execute(
                "INSERT INTO queue.deliveries (event_id, consumer) SELECT id, $1 FROM queue.events", CONSUMER
            )
            statement = _Statements.build(CONSUMER, QueueTuning(batch_size=50)).claim
            async with conn.transaction():
                [raw] = await conn.fetchrow("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement.text)
                taken = await conn.fetchval("SELECT count(*) FROM queue.claims, unnest(deliveries)")
                await conn.execute("ROLLBACK; BEGIN")  # nothing kept
        finally:
            await conn.close()
    plan = json.loads(raw)[0]["Plan"]
    return plan["Shared Hit Blocks"] + plan["Shared Read Blocks"], taken


async def test_a_claim_reads_about_its_batch_not_the_backlog(server_url: str) -> None:
    blocks, taken = await _blocks_read_by_a_claim(server_url, 100_000)
    assert taken == 50
    # A batch's own work is an index descent or two per delivery (the delivery, its event) and
    # the claim: about 570 blocks here, 260 from a backlog of 1,000. A bitmap scan and sort of
    # the backlog reads all of its 2,700 heap pages (3,880 blocks in all, measured).
    assert blocks < 1_000, blocks
