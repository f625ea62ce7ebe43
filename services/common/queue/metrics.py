"""Queue metrics for Prometheus: what the workers count as they go, and what the queue tables say.

Counters and the latency histogram are module-level with a `consumer` label, so two apps in one
process share them and nothing is registered twice. Depth (pending deliveries, age of the oldest,
dead deliveries) needs a query, and a scrape must not wait on the database: a small loop refreshes
a snapshot, and a collector reads it at scrape time, ageing the oldest delivery by the time since.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import structlog
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.clock import until_stopped

log = structlog.get_logger(__name__)

HANDLED = Counter("clinic_queue_handled", "Deliveries handled and acknowledged.", ["consumer"])
RETRIED = Counter("clinic_queue_retried", "Handler failures scheduled for another attempt.", ["consumer"])
DEAD = Counter("clinic_queue_dead", "Deliveries that ran out of attempts.", ["consumer"])
HANDLING_SECONDS = Histogram(
    "clinic_queue_handling_seconds",
    "Time a handler took for one event.",
    ["consumer"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


@dataclass(frozen=True, slots=True)
class Depth:
    pending: int
    oldest_pending_seconds: float
    dead: int
    taken_at: float  # time.monotonic() of the query


_snapshot: dict[str, Depth] = {}


class QueueDepthCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            "clinic_queue_pending_deliveries",
            "Deliveries not yet handled (ready, leased or waiting to retry).",
            labels=["consumer"],
        )
        oldest = GaugeMetricFamily(
            "clinic_queue_oldest_pending_age_seconds",
            "Age of the oldest pending delivery (0 when none).",
            labels=["consumer"],
        )
        dead = GaugeMetricFamily(
            "clinic_queue_dead_deliveries", "Deliveries waiting for an operator.", labels=["consumer"]
        )
        now = time.monotonic()
        for consumer, depth in sorted(_snapshot.items()):
            age = depth.oldest_pending_seconds + (now - depth.taken_at) if depth.pending else 0.0
            pending.add_metric([consumer], depth.pending)
            oldest.add_metric([consumer], age)
            dead.add_metric([consumer], depth.dead)
        yield from (pending, oldest, dead)


REGISTRY.register(QueueDepthCollector())


# A delivery in a worker's claim counts as pending (`queue.owed`).
_DEPTH = """
    WITH owed AS (
        SELECT consumer, status, created_at FROM queue.owed WHERE consumer = ANY(CAST(:names AS text[]))
    )
    SELECT consumer, count(*) FILTER (WHERE status = 'pending') AS pending,
           coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending')),
                    0)::float8 AS oldest,
           count(*) FILTER (WHERE status = 'dead') AS dead
    FROM owed GROUP BY consumer
"""


async def refresh_depth(engine: AsyncEngine, consumers: Iterable[str]) -> None:
    """Query pending and dead deliveries of these consumers into the snapshot."""
    names = sorted(set(consumers))
    if not names:
        return
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(_DEPTH),
                {"names": names},
            )
        ).all()
    taken_at = time.monotonic()
    found = {row.consumer: row for row in rows}
    for name in names:
        row = found.get(name)
        _snapshot[name] = (
            Depth(row.pending, max(0.0, row.oldest), row.dead, taken_at)
            if row is not None
            else Depth(0, 0.0, 0, taken_at)
        )


async def run_depth_refresher(
    engine: AsyncEngine, consumers: Sequence[str], interval: float, stop: asyncio.Event
) -> None:
    """Refresh the depth snapshot every `interval` seconds until `stop`."""
    await until_stopped(
        stop, partial(refresh_depth, engine, consumers), interval, failed="queue_depth_refresh_failed"
    )
