"""Property 4: LISTEN/NOTIFY wakes workers at once; polling carries on while the listening
connection is down, and the listener reconnects."""

from __future__ import annotations

import dataclasses
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.queue import LISTENER_NAME, QueueWorker
from tests.conftest import eventually
from tests.queue.support import FAST, Lane, recording, running

SLOW_POLL = dataclasses.replace(FAST, poll_seconds=60.0)


async def _listener_pids(engine: AsyncEngine, consumer: str) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :n"),
            {"n": f"{LISTENER_NAME}:{consumer}"[:63]},
        )
        return list(rows.scalars())


async def _terminate(engine: AsyncEngine, pid: int) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})


async def _listening(worker: QueueWorker) -> bool:
    return worker.listening


async def test_notify_wakes_the_worker_well_within_the_poll_interval(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    [consumer] = await lane.subscribe("notify")
    async with running(engine, database_url, (recording(consumer), SLOW_POLL)) as [worker]:
        await eventually(lambda: _listening(worker))
        await eventually(lambda: _applied_nothing_owed(lane, consumer, set()))  # the startup drain is done
        events = set(await lane.publish(3))
        # A minute-long poll: only the NOTIFY can get these handled within the deadline.
        await eventually(lambda: _applied_nothing_owed(lane, consumer, events), within=10.0)


async def _applied_nothing_owed(lane: Lane, consumer: str, events: set[uuid.UUID]) -> bool:
    return await lane.applied(consumer) == events and await lane.deliveries(consumer) == []


async def test_polling_carries_on_while_the_listener_is_down(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    [consumer] = await lane.subscribe("poll")
    no_reconnect_soon = dataclasses.replace(FAST, poll_seconds=0.2, reconnect_seconds=60.0)
    async with running(engine, database_url, (recording(consumer), no_reconnect_soon)) as [worker]:
        await eventually(lambda: _listening(worker))
        [pid] = await _listener_pids(engine, consumer)
        await _terminate(engine, pid)
        await eventually(lambda: _not_listening(worker), what="the worker noticed the lost listener")
        events = set(await lane.publish(2))
        await eventually(lambda: _applied_nothing_owed(lane, consumer, events), what="handled by polling")
        assert not worker.listening
        assert await _listener_pids(engine, consumer) == []


async def _not_listening(worker: QueueWorker) -> bool:
    return not worker.listening


async def test_listener_reconnects_after_its_connection_is_terminated(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    [consumer] = await lane.subscribe("reconnect")
    async with running(engine, database_url, (recording(consumer), SLOW_POLL)) as [worker]:
        await eventually(lambda: _listening(worker))
        [first] = await _listener_pids(engine, consumer)
        await _terminate(engine, first)
        await eventually(lambda: _listens_again(engine, consumer, first), what="a new listening connection")
        await eventually(lambda: _listening(worker))
        events = set(await lane.publish(2))
        await eventually(lambda: _applied_nothing_owed(lane, consumer, events), within=10.0)


async def _listens_again(engine: AsyncEngine, consumer: str, old: int) -> bool:
    pids = await _listener_pids(engine, consumer)
    return len(pids) == 1 and pids[0] != old


async def test_each_consumer_is_notified_on_its_own_channel_of_its_own_events(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    """A publish wakes the workers of the consumers it owes the event to, and no others."""
    import asyncpg

    from services.common.db.engine import libpq_url
    from services.common.queue import channel_for

    other = Lane(engine, database_url)
    [mine] = await lane.subscribe("own-channel")
    [theirs] = await other.subscribe("own-channel")
    heard: dict[str, list[str]] = {mine: [], theirs: []}
    conn = await asyncpg.connect(libpq_url(database_url))
    try:
        for consumer in heard:
            await conn.add_listener(
                channel_for(consumer), lambda _c, _p, channel, _d, c=consumer: heard[c].append(channel)
            )
        await other.publish(2)
        await eventually(lambda: _heard(heard, theirs), what="their consumer's channel notified")
        await conn.execute("SELECT 1")  # any notification sent with that commit has arrived by now
        assert heard[mine] == []
        await lane.publish(1)
        await eventually(lambda: _heard(heard, mine), what="my consumer's channel notified")
        assert heard[mine] == [channel_for(mine)]
    finally:
        await conn.close()


async def _heard(heard: dict[str, list[str]], consumer: str) -> bool:
    return bool(heard[consumer])
