"""Property 4: LISTEN/NOTIFY wakes workers at once; polling carries on while the listening
connection is down, and the listener reconnects."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.queue import LISTENER_NAME, QueueTuning, QueueWorker
from tests.conftest import eventually, query
from tests.queue.support import FAST, Lane, recording, running

SLOW_POLL = dataclasses.replace(FAST, poll_seconds=60.0)


async def _listener_pids(engine: AsyncEngine, consumer: str) -> list[int]:
    name = f"{LISTENER_NAME}:{consumer}"[:63]
    rows = await query(engine, "SELECT pid FROM pg_stat_activity WHERE application_name = :n", n=name)
    return [row.pid for row in rows]


async def _terminate(engine: AsyncEngine, pid: int) -> None:
    await query(engine, "SELECT pg_terminate_backend(:p)", p=pid)


async def _listening(worker: QueueWorker) -> bool:
    return worker.listening


@asynccontextmanager
async def listening_worker(
    lane: Lane, engine: AsyncEngine, database_url: str, name: str, tuning: QueueTuning
) -> AsyncIterator[tuple[str, QueueWorker]]:
    """A new recording consumer `name` (its full name) and its worker, running with `tuning`,
    once the worker listens."""
    [consumer] = await lane.subscribe(name)
    async with running(engine, database_url, (recording(consumer), tuning)) as [worker]:
        await eventually(lambda: _listening(worker))
        yield consumer, worker


async def test_notify_wakes_the_worker_well_within_the_poll_interval(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    async with listening_worker(lane, engine, database_url, "notify", SLOW_POLL) as (consumer, _):
        await eventually(lambda: _applied_nothing_owed(lane, consumer, set()))  # the startup drain is done
        events = set(await lane.publish(3))
        # A minute-long poll: only the NOTIFY can get these handled within the deadline.
        await eventually(lambda: _applied_nothing_owed(lane, consumer, events), within=10.0)


async def _applied_nothing_owed(lane: Lane, consumer: str, events: set[uuid.UUID]) -> bool:
    return await lane.applied(consumer) == events and await lane.deliveries(consumer) == []


async def test_polling_carries_on_while_the_listener_is_down(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    no_reconnect_soon = dataclasses.replace(FAST, poll_seconds=0.2, reconnect_seconds=60.0)
    async with listening_worker(lane, engine, database_url, "poll", no_reconnect_soon) as (consumer, worker):
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
    async with listening_worker(lane, engine, database_url, "reconnect", SLOW_POLL) as (consumer, worker):
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
