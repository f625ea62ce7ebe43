"""A queue worker cancelled mid-batch (at shutdown, past its grace period) hands the deliveries
it claimed back at once, instead of leaving them under their lease."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from services.common.contracts.events import Envelope
from services.common.db.engine import asyncpg_url
from services.common.queue import Consumer, QueueTuning, QueueWorker
from tests.conftest import query_value
from tests.queue.support import Lane

pytestmark = pytest.mark.reliability


async def test_a_worker_cancelled_mid_batch_releases_its_claims_at_once(
    engine: AsyncEngine, database_url: str
) -> None:
    lane = Lane(engine, database_url)
    [name] = await lane.subscribe("hangs")
    await lane.publish(3)
    started = asyncio.Event()

    async def handler(session: AsyncSession, envelope: Envelope) -> None:
        started.set()
        await asyncio.sleep(120)  # a handler stuck past the shutdown grace

    worker = QueueWorker(engine, database_url, Consumer(name, handler), QueueTuning(lease_seconds=300))
    task = asyncio.create_task(worker.drain(asyncio.Event()))
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    async with engine.connect() as conn:
        now = await conn.scalar(text("SELECT now()"))
    rows = await lane.deliveries(name)
    assert len(rows) == 3
    # Claimed once (the attempt counts), but available now rather than in 300 s.
    assert [(r.status, r.attempts) for r in rows] == [("pending", 1)] * 3
    assert all(r.available_at <= now for r in rows)
    # And the next worker takes them straight away, and applies them.
    applied: list[Envelope] = []

    async def apply(session: AsyncSession, envelope: Envelope) -> None:
        applied.append(envelope)

    assert await QueueWorker(engine, database_url, Consumer(name, apply), QueueTuning()).drain_once() == 3
    assert len(applied) == 3


async def test_a_worker_cancelled_mid_batch_gives_its_pooled_connection_back_clean(
    engine: AsyncEngine, database_url: str
) -> None:
    """The worker drives its batch's transaction itself: cancelled midway, it must roll that
    transaction back before its connection goes back to the pool. With one pooled connection,
    the release and the next worker both use the connection the cancelled worker had."""
    lane = Lane(engine, database_url)
    [name] = await lane.subscribe("hangs")
    await lane.publish(3)
    started = asyncio.Event()

    async def handler(session: AsyncSession, envelope: Envelope) -> None:
        await session.execute(text("SELECT 1"))  # the handler has used the batch's transaction
        started.set()
        await asyncio.sleep(120)

    pooled = create_async_engine(asyncpg_url(database_url), pool_size=1, max_overflow=0)
    try:
        worker = QueueWorker(pooled, database_url, Consumer(name, handler), QueueTuning(lease_seconds=300))
        task = asyncio.create_task(worker.drain(asyncio.Event()))
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

        # Released at once through the pool's one connection, and nothing left open on it.
        assert [(r.status, r.attempts) for r in await lane.deliveries(name)] == [("pending", 1)] * 3
        idle_in_transaction = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
        )
        assert await query_value(engine, idle_in_transaction) == 0
        applied: list[Envelope] = []

        async def apply(session: AsyncSession, envelope: Envelope) -> None:
            applied.append(envelope)

        assert await QueueWorker(pooled, database_url, Consumer(name, apply), QueueTuning()).drain_once() == 3
        assert len(applied) == 3
        assert await lane.deliveries(name) == []
    finally:
        await pooled.dispose()
