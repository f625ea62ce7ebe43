"""What the queue's tests share: a lane (a fresh event type and consumers subscribed to it), a
worker running for the length of a block, an effects table a consumer writes to, polling."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.contracts.events import Envelope, Payload
from services.common.queue import Consumer, QueueTuning, QueueWorker, publish
from tests.conftest import REPO_ROOT

WORKER_SCRIPT = REPO_ROOT / "tests" / "queue" / "worker_proc.py"

EFFECTS_DDL = (
    "CREATE TABLE IF NOT EXISTS public.queue_test_effects ("
    " consumer text NOT NULL, event_id uuid NOT NULL, pid int NOT NULL,"
    " at timestamptz NOT NULL DEFAULT clock_timestamp())"
)
# A consumer under test may also leave a mark outside its transaction ("I have started").
MARKS_DDL = (
    "CREATE TABLE IF NOT EXISTS public.queue_test_marks ("
    " consumer text NOT NULL, event_id uuid NOT NULL, pid int NOT NULL, what text NOT NULL)"
)


class Probe(Payload, frozen=True, kw_only=True):
    """A test event; each lane publishes it under a type of its own."""

    TYPE: ClassVar[str] = "test.queue.probe"
    n: int = 0
    note: str = ""


def probe_type() -> type[Probe]:
    class LaneProbe(Probe, frozen=True, kw_only=True):
        TYPE: ClassVar[str] = f"test.queue.probe.{uuid.uuid4().hex[:10]}"

    return LaneProbe


@dataclass
class Lane:
    """An event type of its own with consumers of their own, so tests never see each other's rows."""

    engine: AsyncEngine
    database_url: str
    payload_type: type[Probe] = field(default_factory=probe_type)
    consumers: list[str] = field(default_factory=list)

    async def subscribe(self, *names: str) -> list[str]:
        unique = [f"{name}.{uuid.uuid4().hex[:8]}" for name in names]
        async with self.engine.begin() as conn:
            for name in unique:
                await conn.execute(
                    text("INSERT INTO queue.subscriptions (consumer, event_type) VALUES (:c, :t)"),
                    {"c": name, "t": self.payload_type.TYPE},
                )
        self.consumers.extend(unique)
        return unique

    async def publish(self, count: int = 1, *, note: str = "", key: str | None = None) -> list[uuid.UUID]:
        """Publish `count` events in one transaction; return their ids."""
        ids: list[uuid.UUID] = []
        async with AsyncSession(self.engine) as session:
            for n in range(count):
                event_id = await publish(
                    session, self.payload_type(n=n, note=note), subject=uuid.uuid4(), key=key
                )
                assert event_id is not None
                ids.append(event_id)
            await session.commit()
        return ids

    async def deliveries(self, consumer: str) -> list[Any]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT id, event_id, status, attempts, last_error, available_at, updated_at "
                    "FROM queue.deliveries WHERE consumer = :c ORDER BY id"
                ),
                {"c": consumer},
            )
            return list(rows)

    async def applied(self, consumer: str) -> set[uuid.UUID]:
        """The event ids in the consumer's inbox."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT event_id FROM queue.inbox WHERE consumer = :c"), {"c": consumer}
            )
            return set(rows.scalars())

    async def effects(self, consumer: str) -> list[Any]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT event_id, pid FROM public.queue_test_effects WHERE consumer = :c"),
                {"c": consumer},
            )
            return list(rows)


async def record_effect(session: AsyncSession, consumer: str, envelope: Envelope) -> None:
    """A consumer's effect: one row per application (no unique key, so a double shows)."""
    await session.execute(
        text("INSERT INTO public.queue_test_effects (consumer, event_id, pid) VALUES (:c, :e, :p)"),
        {"c": consumer, "e": envelope.id, "p": os.getpid()},
    )


def recording(consumer: str) -> Consumer:
    async def handler(session: AsyncSession, envelope: Envelope) -> None:
        await record_effect(session, consumer, envelope)

    return Consumer(consumer, handler)


FAST = QueueTuning(poll_seconds=0.1, lease_seconds=5.0, backoff_base_seconds=0.05, backoff_max_seconds=0.2)


@asynccontextmanager
async def running(
    engine: AsyncEngine, database_url: str, *workers: tuple[Consumer, QueueTuning]
) -> AsyncIterator[list[QueueWorker]]:
    """QueueWorkers running in this loop for the length of the block."""
    stop = asyncio.Event()
    started = [QueueWorker(engine, database_url, consumer, tuning) for consumer, tuning in workers]
    tasks = [asyncio.create_task(w.run(stop)) for w in started]
    try:
        yield started
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def start_worker_process(database_url: str, consumer: str, mode: str, *args: str) -> subprocess.Popen[bytes]:
    """tests/queue/worker_proc.py as its own process (see its docstring for the modes)."""
    return subprocess.Popen(
        [sys.executable, str(WORKER_SCRIPT), database_url, consumer, mode, *args],
        cwd=REPO_ROOT,
        env={**os.environ, "CLINIC_LOG_FORMAT": "json"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop_processes(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
