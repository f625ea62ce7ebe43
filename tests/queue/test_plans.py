"""A worker's claim takes its batch by walking the consumer's ready deliveries in order, however
large the backlog, on tables the planner has no statistics for (a fresh install, or a server
whose autovacuum is off): what one claim reads does not grow with the backlog, whether the
worker's connection planned the claim on an empty queue or on a long backlog (a connection keeps
the plan it made first)."""

from __future__ import annotations

import json

import asyncpg
import pytest

from services.common.db.engine import libpq_url
from services.common.queue import QueueTuning
from services.common.queue.worker import _Statements
from tests.conftest import migrated_database

CONSUMER = "plans.backlog"
BACKLOG = 100_000


async def _fill(conn: asyncpg.Connection, count: int) -> None:
    await conn.execute(
        "WITH e AS (INSERT INTO queue.events (id, type, version, occurred_at, subject, payload) "
        "SELECT gen_random_uuid(), 'plans.tick', 1, now(), gen_random_uuid(), '{}' "
        "FROM generate_series(1, $1) RETURNING id) "
        "INSERT INTO queue.deliveries (event_id, consumer) SELECT id, $2 FROM e",
        count,
        CONSUMER,
    )


async def _blocks_read_by_a_claim(server_url: str, planned_at: int) -> tuple[int, int]:
    """(blocks read, deliveries taken) by one claim of 50 on never-analysed tables holding
    BACKLOG ready deliveries of the consumer, by a connection that made its plan of the claim
    when `planned_at` were ready. Nothing is kept."""
    async with migrated_database(server_url, "clinic_plan") as url:
        conn = await asyncpg.connect(libpq_url(url))
        try:
            await _fill(conn, planned_at)
            claim = _Statements.build(CONSUMER, QueueTuning(batch_size=50)).claim.text
            await conn.execute(f"PREPARE claim AS {claim}")
            async with conn.transaction():
                await conn.execute("EXECUTE claim")  # the plan is made now, and kept
                await conn.execute("ROLLBACK; BEGIN")
            await _fill(conn, BACKLOG - planned_at)
            async with conn.transaction():
                [raw] = await conn.fetchrow("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE claim")
                taken = await conn.fetchval("SELECT count(*) FROM queue.claims, unnest(deliveries)")
                await conn.execute("ROLLBACK; BEGIN")
        finally:
            await conn.close()
    plan = json.loads(raw)[0]["Plan"]
    return plan["Shared Hit Blocks"] + plan["Shared Read Blocks"], taken


@pytest.mark.parametrize(
    "planned_at", [0, BACKLOG], ids=["planned-on-an-empty-queue", "planned-on-the-backlog"]
)
async def test_a_claim_reads_about_its_batch_not_the_backlog(server_url: str, planned_at: int) -> None:
    blocks, taken = await _blocks_read_by_a_claim(server_url, planned_at)
    assert taken == 50
    # A batch's own work is an index descent or two per delivery (the delivery, its event) and
    # the claim: about 600 blocks here (260 with a backlog of 1,000). A plan that scans the
    # backlog reads all of its heap pages: a bitmap scan and sort of the consumer's deliveries
    # read 3,880 blocks, a hash join over every delivery and event more.
    assert blocks < 1_000, blocks
