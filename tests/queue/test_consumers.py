"""Properties 2, 3 and 8: fan-out, competing consumers applying each event once, redelivery with
no second effect, claims committed before any handler runs."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.contracts.events import Envelope
from services.common.queue import Consumer, QueueWorker, redeliver
from tests.conftest import eventually, query_value
from tests.queue.support import FAST, Lane, record_effect, recording, running


async def test_fan_out_each_consumer_applies_every_event(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    triage, mirror = await lane.subscribe("fan.triage", "fan.mirror")
    events = set(await lane.publish(20))
    async with running(engine, database_url, (recording(triage), FAST), (recording(mirror), FAST)):
        await eventually(
            lambda: _all_applied(lane, [triage, mirror], events), what="both consumers applied every event"
        )
    for consumer in (triage, mirror):
        effects = await lane.effects(consumer)
        assert Counter(e.event_id for e in effects) == dict.fromkeys(events, 1)
        assert await lane.deliveries(consumer) == []


async def _all_applied(lane: Lane, consumers: list[str], events: set[uuid.UUID]) -> bool:
    for consumer in consumers:
        if await lane.applied(consumer) != events:
            return False
    return True


async def test_competing_workers_apply_each_event_once(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    [consumer] = await lane.subscribe("compete")
    small = dataclasses.replace(FAST, batch_size=7)
    events = set(await lane.publish(150))
    async with running(engine, database_url, *[(recording(consumer), small)] * 3):
        await eventually(lambda: _all_applied(lane, [consumer], events), what="every event applied")
    effects = await lane.effects(consumer)
    assert len(effects) == 150
    assert {e.event_id for e in effects} == events


async def test_redelivered_event_has_no_second_effect(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    [consumer] = await lane.subscribe("redeliver")
    [event_id] = await lane.publish()
    async with running(engine, database_url, (recording(consumer), FAST)):
        await eventually(lambda: _all_applied(lane, [consumer], {event_id}))
        async with engine.begin() as conn:  # as a lost ack would
            await redeliver(conn, consumer, event_id)
        await eventually(lambda: _nothing_owed(lane, consumer), what="the redelivery was acked")
    assert [e.event_id for e in await lane.effects(consumer)] == [event_id]


async def test_a_redelivered_event_in_a_batch_of_new_ones_holds_none_of_them_back(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    """One batch: an event delivered again (already applied) among new ones. The new ones are
    applied once each, the old one is only acked, and nothing is counted as a failure."""
    [consumer] = await lane.subscribe("redeliver.mixed")
    worker = QueueWorker(engine, database_url, recording(consumer), FAST)
    [old] = await lane.publish()
    assert await worker.drain_once() == 1
    async with engine.begin() as conn:
        await redeliver(conn, consumer, old)
    new = await lane.publish(3)
    assert await worker.drain_once() == 4  # one batch: the old event and the three new
    effects = Counter(e.event_id for e in await lane.effects(consumer))
    assert effects == {old: 1, **dict.fromkeys(new, 1)}
    assert await lane.deliveries(consumer) == []


async def _nothing_owed(lane: Lane, consumer: str) -> bool:
    return await lane.deliveries(consumer) == []


async def test_slow_worker_keeps_its_batch_past_the_lease(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    """The lease runs out while the first worker is still inside its transaction; the second worker
    cannot take the event meanwhile (the ack locked it), so it is handled once."""
    [consumer] = await lane.subscribe("slow")
    calls: list[uuid.UUID] = []

    async def slow(session: AsyncSession, envelope: Envelope) -> None:
        calls.append(envelope.id)
        await record_effect(session, consumer, envelope)
        await session.execute(text("SELECT pg_sleep(1.0)"))  # database work past the lease

    short_lease = dataclasses.replace(FAST, lease_seconds=0.3)
    [event_id] = await lane.publish()
    async with running(engine, database_url, *[(Consumer(consumer, slow), short_lease)] * 2):
        await eventually(lambda: _nothing_owed(lane, consumer), what="the event was acked")
    assert calls == [event_id]
    assert [e.event_id for e in await lane.effects(consumer)] == [event_id]


async def test_hung_handler_loses_its_claim_after_the_lease(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    """A handler stuck outside the database leaves its transaction idle; PostgreSQL ends it after
    the lease, and another worker handles the event."""
    [consumer] = await lane.subscribe("hung")
    release = asyncio.Event()
    hung: list[uuid.UUID] = []

    async def hangs_first_time(session: AsyncSession, envelope: Envelope) -> None:
        if not hung:
            hung.append(envelope.id)
            await release.wait()
        await record_effect(session, consumer, envelope)

    short_lease = dataclasses.replace(FAST, lease_seconds=0.5)
    [event_id] = await lane.publish()
    try:
        async with running(engine, database_url, *[(Consumer(consumer, hangs_first_time), short_lease)] * 2):
            await eventually(lambda: _nothing_owed(lane, consumer), what="another worker handled it")
            release.set()
    finally:
        release.set()
    assert hung == [event_id]
    assert [e.event_id for e in await lane.effects(consumer)] == [event_id]


async def test_claim_is_committed_before_the_handler_runs(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    """Another connection sees the claim (the delivery moved into a claim that lapses after the
    lease) while the handler is still running: the claim was its own short transaction, so a
    worker dying in the handler leaves it behind to be counted."""
    [consumer] = await lane.subscribe("claimed")
    seen_from_outside: list[tuple[int, bool]] = []

    async def look_from_outside(session: AsyncSession, envelope: Envelope) -> None:
        async with engine.connect() as other:
            row = (
                await other.execute(
                    text(
                        "SELECT count(*) AS claims, coalesce(bool_and(lapses_at > now()), false) AS leased "
                        "FROM queue.claims WHERE consumer = :c AND :e = ANY(event_ids)"
                    ),
                    {"c": consumer, "e": envelope.id},
                )
            ).one()
        seen_from_outside.append((row.claims, row.leased))

    [event_id] = await lane.publish()
    worker = QueueWorker(engine, database_url, Consumer(consumer, look_from_outside), FAST)
    assert await worker.drain_once() == 1
    assert seen_from_outside == [(1, True)]
    # Settled with the handling: no claim and no delivery is left behind.
    assert await query_value(engine, "SELECT count(*) FROM queue.claims WHERE consumer = :c", c=consumer) == 0
    assert await lane.deliveries(consumer) == []
    assert await lane.applied(consumer) == {event_id}
