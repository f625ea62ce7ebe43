"""Property 6: retries with exponential backoff and jitter, then a dead delivery with its last
error, which an operator lists and replays."""

from __future__ import annotations

import dataclasses
import uuid

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.contracts.events import Envelope
from services.common.queue import Consumer, QueueTuning, QueueWorker, dead_deliveries, replay_dead
from tests.conftest import eventually
from tests.queue.support import FAST, Lane, record_effect, running


class Flaky(RuntimeError):
    pass


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    tuning = QueueTuning(backoff_base_seconds=1.0, backoff_max_seconds=20.0)
    for attempts, step in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 20.0), (9, 20.0)]:
        delays = [tuning.backoff(attempts) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays), (attempts, min(delays), max(delays))
        assert len(set(delays)) > 150  # jittered, not one value


async def test_failed_event_waits_out_its_backoff_then_succeeds(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    [consumer] = await lane.subscribe("flaky")
    failures: list[uuid.UUID] = []

    async def fails_twice(session: AsyncSession, envelope: Envelope) -> None:
        if len(failures) < 2:
            failures.append(envelope.id)
            raise Flaky(f"attempt {len(failures)} failed")
        await record_effect(session, consumer, envelope)

    [event_id] = await lane.publish()
    worker = QueueWorker(
        engine,
        database_url,
        Consumer(consumer, fails_twice),
        dataclasses.replace(FAST, backoff_base_seconds=2.0, backoff_max_seconds=60.0),
    )
    await worker.drain_once()
    [after_first] = await lane.deliveries(consumer)
    assert (after_first.status, after_first.attempts) == ("pending", 1)
    assert after_first.last_error == "Flaky: attempt 1 failed"
    delay = (after_first.available_at - after_first.updated_at).total_seconds()
    assert 1.0 <= delay <= 2.0  # half to all of the first step
    assert await worker.drain_once() == 0  # not ready before its backoff has passed

    async with running(engine, database_url, (Consumer(consumer, fails_twice), FAST)):
        await eventually(lambda: _applied(lane, consumer, event_id), within=15.0)
    assert failures == [event_id, event_id]
    assert [e.event_id for e in await lane.effects(consumer)] == [event_id]


async def _applied(lane: Lane, consumer: str, event_id: uuid.UUID) -> bool:
    return await lane.applied(consumer) == {event_id} and await lane.deliveries(consumer) == []


async def test_failing_event_costs_only_itself_a_retry_in_its_batch(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    [consumer] = await lane.subscribe("poison")
    events = await lane.publish(5)
    poison = events[2]

    async def rejects_one(session: AsyncSession, envelope: Envelope) -> None:
        await record_effect(session, consumer, envelope)  # rolled back for the poison event
        if envelope.id == poison:
            raise Flaky("cannot apply this one")

    worker = QueueWorker(engine, database_url, Consumer(consumer, rejects_one), FAST)
    assert await worker.drain_once() == 5
    assert await lane.applied(consumer) == set(events) - {poison}
    assert sorted(e.event_id for e in await lane.effects(consumer)) == sorted(set(events) - {poison})
    [left] = await lane.deliveries(consumer)
    assert (left.event_id, left.attempts, left.last_error) == (poison, 1, "Flaky: cannot apply this one")


async def test_event_failing_every_attempt_is_dead_with_its_last_error_and_replays(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    [consumer] = await lane.subscribe("doomed")
    fixed = False

    async def broken_until_fixed(session: AsyncSession, envelope: Envelope) -> None:
        if not fixed:
            raise Flaky(f"bug in {envelope.type}")
        await record_effect(session, consumer, envelope)

    three_tries = dataclasses.replace(FAST, max_attempts=3)
    [event_id] = await lane.publish()
    async with running(engine, database_url, (Consumer(consumer, broken_until_fixed), three_tries)):
        await eventually(lambda: _dead(lane, consumer), what="the delivery is dead")
    [dead] = await lane.deliveries(consumer)
    assert (dead.status, dead.attempts) == ("dead", 3)
    assert dead.last_error == f"Flaky: bug in {lane.payload_type.TYPE}"

    async with engine.connect() as conn:
        [listed] = await dead_deliveries(conn, [consumer])
    assert (listed.id, listed.event_id, listed.attempts) == (dead.id, event_id, 3)

    fixed = True
    async with engine.begin() as conn:
        assert await replay_dead(conn, dead.id)
    async with running(engine, database_url, (Consumer(consumer, broken_until_fixed), three_tries)):
        await eventually(lambda: _applied(lane, consumer, event_id))
    assert [e.event_id for e in await lane.effects(consumer)] == [event_id]
    async with engine.begin() as conn:
        assert not await replay_dead(conn, dead.id)  # nothing dead to replay any more


async def _dead(lane: Lane, consumer: str) -> bool:
    return [d.status for d in await lane.deliveries(consumer)] == ["dead"]


async def test_failure_in_a_busy_queue_loses_no_following_batch(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    """While batches come full, each batch's transaction also claims the next; a failure rolls that
    claim back with the batch, and the events it had taken are claimed again."""
    [consumer] = await lane.subscribe("busy")
    events = await lane.publish(40)
    poison = events[3]

    async def rejects_one(session: AsyncSession, envelope: Envelope) -> None:
        if envelope.id == poison:
            raise Flaky("cannot apply this one")
        await record_effect(session, consumer, envelope)

    small = dataclasses.replace(FAST, batch_size=8, max_attempts=2)
    async with running(engine, database_url, (Consumer(consumer, rejects_one), small)):
        await eventually(lambda: _dead(lane, consumer), what="all handled but the poison, which is dead")
    effects = await lane.effects(consumer)
    assert sorted(e.event_id for e in effects) == sorted(set(events) - {poison})
    [dead] = await lane.deliveries(consumer)
    assert (dead.event_id, dead.attempts) == (poison, 2)


async def test_a_stored_error_passes_the_log_scrubber(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    [consumer] = await lane.subscribe("leaky")

    async def leaks(session: AsyncSession, envelope: Envelope) -> None:
        raise Flaky(
            "duplicate key value violates unique constraint DETAIL: Key (mrn)=(MRN-0042) already exists."
        )

    await lane.publish()
    await QueueWorker(engine, database_url, Consumer(consumer, leaks), FAST).drain_once()
    [left] = await lane.deliveries(consumer)
    assert "MRN-0042" not in left.last_error
    assert "Key (mrn)=([redacted])" in left.last_error
