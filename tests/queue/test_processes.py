"""Properties 3 and 5 across processes: two worker processes apply each event once; a worker
killed with SIGKILL mid-handling loses nothing; an event that keeps killing its worker ends up
dead instead of looping."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.queue import LISTENER_NAME
from tests.conftest import eventually, query_value
from tests.queue.support import FAST, Lane, recording, running, start_worker_process, stop_processes


async def _listeners(engine: AsyncEngine, consumer: str) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
            {"n": f"{LISTENER_NAME}:{consumer}"[:63]},
        )
    return int(count or 0)


async def _started(engine: AsyncEngine, consumer: str) -> list[tuple[uuid.UUID, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT event_id, pid FROM public.queue_test_marks WHERE consumer = :c AND what = 'started'"
            ),
            {"c": consumer},
        )
    return [(r.event_id, r.pid) for r in rows]


async def test_two_worker_processes_apply_each_event_once(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    [consumer] = await lane.subscribe("procs")
    processes = [
        start_worker_process(database_url, consumer, "record", "--batch", "5", "--sleep-ms", "3")
        for _ in range(2)
    ]
    try:
        await eventually(
            lambda: _both_listening(engine, consumer), within=60.0, what="both workers listening"
        )
        events = set(await lane.publish(300))

        async def all_applied() -> bool:
            return await lane.applied(consumer) == events

        await eventually(all_applied, within=60.0)
    finally:
        stop_processes(processes)
    effects = await lane.effects(consumer)
    assert len(effects) == 300
    assert {e.event_id for e in effects} == events
    assert {e.pid for e in effects} == {p.pid for p in processes}  # both took a share


async def _both_listening(engine: AsyncEngine, consumer: str) -> bool:
    return await _listeners(engine, consumer) == 2


async def test_worker_killed_mid_handling_loses_nothing(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    [consumer] = await lane.subscribe("killed")
    [event_id] = await lane.publish()
    blocked = start_worker_process(database_url, consumer, "block", "--lease", "1.0")
    try:
        [(started_event, pid)] = await eventually(lambda: _started(engine, consumer), within=60.0)
        assert (started_event, pid) == (event_id, blocked.pid)
        os.kill(blocked.pid, signal.SIGKILL)
        blocked.wait(timeout=30)
    finally:
        stop_processes([blocked])
    # The delivery is in the dead worker's claim, left behind: nobody takes it until it lapses.
    assert await lane.deliveries(consumer) == []
    claims = "SELECT count(*) FROM queue.claims WHERE consumer = :c AND :e = ANY(event_ids)"
    assert await query_value(engine, claims, c=consumer, e=event_id) == 1

    async with running(engine, database_url, (recording(consumer), FAST)):

        async def handled() -> bool:
            return await lane.deliveries(consumer) == [] and await lane.applied(consumer) == {event_id}

        await eventually(handled, what="another worker handled it once the lease had passed")
    assert [e.event_id for e in await lane.effects(consumer)] == [event_id]


async def test_event_that_keeps_killing_its_worker_ends_up_dead(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    [consumer] = await lane.subscribe("lethal")
    [event_id] = await lane.publish()
    died = 0
    for _ in range(6):  # two attempts kill their workers; the second lapsed claim puts it back dead
        worker = start_worker_process(database_url, consumer, "die", "--lease", "0.3", "--max-attempts", "2")
        try:

            async def gone_or_dead(worker: subprocess.Popen[bytes] = worker) -> bool:
                return worker.poll() is not None or [d.status for d in await lane.deliveries(consumer)] == [
                    "dead"
                ]

            await eventually(gone_or_dead, within=60.0)
        finally:
            if worker.poll() == -signal.SIGKILL:
                died += 1
            stop_processes([worker])
        if [d.status for d in await lane.deliveries(consumer)] == ["dead"]:
            break
    [dead] = await lane.deliveries(consumer)
    assert died == 2
    assert (dead.event_id, dead.status, dead.attempts) == (event_id, "dead", 2)
    assert dead.last_error == "attempt 2 never finished (the lease expired)"
    assert await lane.applied(consumer) == set()
