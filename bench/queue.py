"""Drain N events through the clinic's queue and through a bare asyncpg loop, on one database.

    uv run python -m bench.queue [--events 20000] [--workers 4] [--batch 50] [--rounds 1]

The baseline is the least a PostgreSQL queue can do: W connections each looping
`DELETE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT B) RETURNING ...` until empty.
The queue does what the services rely on: a committed claim per batch (with its lease), a
transaction per batch with the consumer's inbox, handler calls and acks, metrics. The queue's
handler does nothing, so what is measured is the queue.

Both sides are measured warm, as a running service is: each first drains a small warm-up on the
same connections. The bare loop then drains a table filled before its clock starts; the queue's
workers, running and idle, drain a burst of N events from the commit that publishes it all (they
wake on its NOTIFY, as they do in the services).

Each round prints both rates, their ratio, and the CPU per event of this process and of the
PostgreSQL server (when it runs on this machine), for each side.

The database: a fresh one on the server at CLINIC_BENCH_DATABASE_URL (dropped afterwards), or an
embedded server in a temporary directory when that is unset.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import asyncpg
import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bench.common import postgres_cpu_seconds
from services.common.contracts.events import Envelope, Payload
from services.common.db.engine import asyncpg_url, create_engine, libpq_url
from services.common.db.migrate import upgrade_all
from services.common.queue import Consumer, QueueTuning, QueueWorker
from services.common.queue.publish import publish_many

CONSUMER = "bench.noop"


class BenchTick(Payload, frozen=True, kw_only=True):
    """A payload of about the size of the clinic's small events."""

    TYPE: ClassVar[str] = "bench.tick"
    referral_id: uuid.UUID
    intake_id: uuid.UUID
    destination: str
    status: str
    n: int


@asynccontextmanager
async def bench_database() -> AsyncIterator[str]:
    """A fresh, migrated database; dropped (and the embedded server stopped) afterwards."""
    configured = os.environ.get("CLINIC_BENCH_DATABASE_URL")
    data_dir: Path | None = None
    if configured:
        server = asyncpg_url(configured)
    else:
        from services.common.db.embedded import start_embedded

        data_dir = Path(tempfile.mkdtemp(prefix="clinic-bench-"))
        data_dir.chmod(0o755)  # the embedded server's system user must reach it
        server = asyncpg_url(start_embedded(data_dir))
    name = f"clinic_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(libpq_url(server))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        engine = create_engine(url, null_pool=True)
        await upgrade_all(engine)
        await engine.dispose()
        yield url
    finally:
        admin = await asyncpg.connect(libpq_url(server))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        if data_dir is not None:
            from services.common.db.embedded import stop_embedded

            stop_embedded(data_dir)
            shutil.rmtree(data_dir, ignore_errors=True)


# -- the clinic's queue ----------------------------------------------------------------------


@dataclass(frozen=True)
class Drain:
    """One drain: its wall time, and the CPU that this process (the workers or the loop's client)
    and the PostgreSQL server (None when it runs elsewhere) used meanwhile."""

    events: int
    seconds: float
    client_cpu: float
    server_cpu: float | None

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def cpu_per_event(self) -> str:
        """CPU per event, in µs, of this process and of the server."""
        client = f"{1e6 * self.client_cpu / self.events:.0f}"
        server = f"{1e6 * self.server_cpu / self.events:.0f}" if self.server_cpu is not None else "?"
        return f"CPU per event: this process {client} us, PostgreSQL {server} us"


@dataclass(frozen=True)
class _Clock:
    """Wall time and CPU from `start()` to `stop()`."""

    cpu: float
    server: float | None
    wall: float

    @classmethod
    def start(cls) -> _Clock:
        return cls(time.process_time(), postgres_cpu_seconds(), time.perf_counter())

    def stop(self, events: int) -> Drain:
        wall, cpu, server = time.perf_counter(), time.process_time(), postgres_cpu_seconds()
        used = server - self.server if server is not None and self.server is not None else None
        return Drain(events, wall - self.wall, cpu - self.cpu, used)


def _ticks(count: int) -> list[tuple[Payload, uuid.UUID]]:
    ticks: list[tuple[Payload, uuid.UUID]] = []
    for n in range(count):
        tick = BenchTick(
            referral_id=uuid.uuid4(),
            intake_id=uuid.uuid4(),
            destination="pain_management",
            status="accepted",
            n=n,
        )
        ticks.append((tick, tick.referral_id))
    return ticks


async def subscribe(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO queue.subscriptions VALUES (:c, :t) ON CONFLICT DO NOTHING"),
            {"c": CONSUMER, "t": BenchTick.TYPE},
        )


async def drain_queue(url: str, events: int, workers: int, batch: int) -> Drain:
    """How long `workers` running QueueWorkers (in this process) take to handle a burst of
    `events` events, from the commit that publishes them all.

    The workers are running, warm and idle when the burst commits, as a service's are between
    bursts: each has handled a warm-up burst first, so its pooled connection has prepared the
    worker's statements and its LISTEN connection is open. (Measured cold, the first 2,000 events
    took twice as long as each 2,000 after them: connections set up and statements planned.)"""
    engine = create_engine(url)
    await subscribe(engine)
    handled = 0
    expected = 0
    all_handled = asyncio.Event()

    async def handler(_session: AsyncSession, _envelope: Envelope) -> None:
        nonlocal handled
        handled += 1
        if handled >= expected:
            all_handled.set()

    async def burst(count: int) -> _Clock:
        """Publish `count` events in one transaction and wait until all are handled; the clock
        starts as that transaction commits."""
        nonlocal expected
        expected += count
        all_handled.clear()
        ticks = _ticks(count)  # built before the clock starts
        async with engine.connect() as conn:
            await conn.begin()
            await publish_many(conn, ticks)
            started = _Clock.start()
            await conn.commit()  # the workers are woken by this commit's NOTIFY
        await all_handled.wait()
        return started

    tuning = QueueTuning(batch_size=batch, poll_seconds=1.0)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(QueueWorker(engine, url, Consumer(CONSUMER, handler), tuning).run(stop))
        for _ in range(workers)
    ]
    await burst(workers * batch * 4)  # warm-up: every worker claims and handles full batches
    clock = await burst(events)
    drained = clock.stop(events)
    stop.set()
    await asyncio.gather(*tasks)
    async with engine.connect() as conn:
        owed = await conn.scalar(text("SELECT count(*) FROM queue.owed WHERE consumer = :c"), {"c": CONSUMER})
        applied = await conn.scalar(
            text("SELECT count(*) FROM queue.inbox WHERE consumer = :c"), {"c": CONSUMER}
        )
        await conn.execute(text("DELETE FROM queue.subscriptions WHERE consumer = :c"), {"c": CONSUMER})
        await conn.execute(text("TRUNCATE queue.deliveries, queue.claims, queue.inbox, queue.events"))
        await conn.commit()
    await engine.dispose()
    if owed or applied != expected:
        raise SystemExit(f"the queue left {owed} deliveries owed and recorded {applied} of {expected} events")
    return drained


# -- the bare loop ---------------------------------------------------------------------------

_RAW_TAKE = (
    "DELETE FROM bench_raw WHERE id IN "
    "(SELECT id FROM bench_raw ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $1) RETURNING id, payload"
)


async def drain_raw(url: str, events: int, workers: int, batch: int) -> Drain:
    """How long `workers` asyncpg connections take to delete `events` rows in SKIP LOCKED batches
    (after a warm-up drain on the same connections, as the queue's workers have one)."""
    dsn = libpq_url(url)
    setup = await asyncpg.connect(dsn)
    await setup.execute(
        "CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, payload jsonb NOT NULL)"
    )
    conns = [await asyncpg.connect(dsn) for _ in range(workers)]
    taken = 0

    async def loop(conn: asyncpg.Connection) -> None:
        nonlocal taken
        while rows := await conn.fetch(_RAW_TAKE, batch):
            taken += len(rows)

    async def fill(rows: int) -> None:
        await setup.execute(
            "INSERT INTO bench_raw (payload) SELECT jsonb_build_object('referral_id', gen_random_uuid(), "
            "'destination', 'pain_management', 'status', 'accepted', 'n', n) FROM generate_series(1, $1) n",
            rows,
        )
        await setup.execute("VACUUM ANALYZE bench_raw")

    await fill(workers * batch * 4)
    await asyncio.gather(*(loop(c) for c in conns))  # warm-up
    taken = 0
    await fill(events)
    clock = _Clock.start()
    await asyncio.gather(*(loop(c) for c in conns))
    drained = clock.stop(events)
    for conn in conns:
        await conn.close()
    await setup.execute("DROP TABLE bench_raw")
    await setup.close()
    if taken != events:
        raise SystemExit(f"the bare loop took {taken} of {events} rows")
    return drained


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.queue", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1, help="alternate both drains this many times")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    async with bench_database() as url:
        print(f"draining {args.events} events, {args.workers} workers, batch {args.batch}", flush=True)
        ratios = []
        rates: list[tuple[float, float]] = []
        for round_ in range(1, args.rounds + 1):
            bare = await drain_raw(url, args.events, args.workers, args.batch)
            drained = await drain_queue(url, args.events, args.workers, args.batch)
            queue, raw = drained.rate, bare.rate
            ratios.append(queue / raw)
            rates.append((queue, raw))
            print(
                f"round {round_}: clinic queue {queue:,.0f} events/s, bare asyncpg loop {raw:,.0f} rows/s, "
                f"queue/bare {queue / raw:.2f}\n"
                f"  queue {drained.cpu_per_event()}\n  bare loop {bare.cpu_per_event()}",
                flush=True,
            )
    from bench.common import PLOTS, Series, svg_plot

    svg_plot(
        PLOTS / "queue.svg",
        "queue: events/s per round",
        "round",
        "events/s",
        [
            Series("clinic queue", [(i + 1, q) for i, (q, _) in enumerate(rates)]),
            Series("bare SKIP LOCKED loop", [(i + 1, r) for i, (_, r) in enumerate(rates)]),
        ],
    )
    print(f"queue ratio {sorted(ratios)[len(ratios) // 2]:.2f}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
