"""Property 1: `publish` runs on the caller's session, in its transaction; keys dedupe for good."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.queue import publish
from tests.conftest import query, query_value
from tests.queue.support import Lane


async def _events_of_type(engine: AsyncEngine, event_type: str) -> list[uuid.UUID]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id FROM queue.events WHERE type = :t"), {"t": event_type})
        return list(rows.scalars())


async def test_rolled_back_publish_leaves_no_event_and_no_delivery(lane: Lane, engine: AsyncEngine) -> None:
    [consumer] = await lane.subscribe("rollback")
    async with AsyncSession(engine) as session:
        event_id = await publish(session, lane.payload_type(n=1), subject=uuid.uuid4())
        assert event_id is not None
        await session.rollback()
    assert await _events_of_type(engine, lane.payload_type.TYPE) == []
    assert await lane.deliveries(consumer) == []


async def test_committed_publish_records_the_event_once_with_its_callers_change(
    lane: Lane, engine: AsyncEngine, test_tables: None
) -> None:
    [consumer] = await lane.subscribe("commit")
    marker = uuid.uuid4()
    async with AsyncSession(engine) as session:
        # The caller's own change and the event share the transaction.
        await session.execute(
            text("INSERT INTO public.queue_test_effects (consumer, event_id, pid) VALUES ('caller', :e, 0)"),
            {"e": marker},
        )
        event_id = await publish(session, lane.payload_type(n=7, note="x"), subject=marker)
        await session.commit()
    assert await _events_of_type(engine, lane.payload_type.TYPE) == [event_id]
    [delivery] = await lane.deliveries(consumer)
    assert (delivery.event_id, delivery.status, delivery.attempts) == (event_id, "pending", 0)
    [row] = await query(
        engine, "SELECT subject, version, payload FROM queue.events WHERE id = :e", e=event_id
    )
    caller_rows = await query_value(
        engine, "SELECT count(*) FROM public.queue_test_effects WHERE event_id = :e", e=marker
    )
    assert (row.subject, row.version, row.payload) == (marker, 1, {"n": 7, "note": "x"})
    assert caller_rows == 1


async def test_duplicate_key_is_skipped_without_aborting_the_callers_transaction(
    lane: Lane, engine: AsyncEngine
) -> None:
    [consumer] = await lane.subscribe("dedupe")
    key = f"probe-{uuid.uuid4()}"
    first = await lane.publish(key=key)
    async with AsyncSession(engine) as session:
        again = await publish(session, lane.payload_type(n=2), subject=uuid.uuid4(), key=key)
        # The transaction is still usable: the caller's next statement and commit go through.
        other = await publish(session, lane.payload_type(n=3), subject=uuid.uuid4(), key=f"{key}-other")
        await session.commit()
    assert again is None
    assert other is not None
    assert sorted(await _events_of_type(engine, lane.payload_type.TYPE)) == sorted([*first, other])
    assert len(await lane.deliveries(consumer)) == 2


async def test_event_without_subscribers_is_recorded_with_no_delivery(
    engine: AsyncEngine, lane: Lane
) -> None:
    [event_id] = await lane.publish()
    assert await _events_of_type(engine, lane.payload_type.TYPE) == [event_id]
    async with engine.connect() as conn:
        owed = await conn.scalar(
            text("SELECT count(*) FROM queue.deliveries WHERE event_id = :e"), {"e": event_id}
        )
    assert owed == 0
