"""Properties 7 and 8: metrics on /metrics, retention, autovacuum tuned for churn."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.contracts.events import Envelope
from services.common.http.web import ServiceSpec, build_app
from services.common.queue import Consumer, QueueWorker, prune, publish
from services.common.settings import Settings
from tests.conftest import eventually, query, query_value
from tests.queue.support import FAST, Lane, record_effect, recording


def _samples(body: str, consumer: str) -> dict[str, float]:
    """Every sample labelled with this consumer, by sample name."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.labels.get("consumer") == consumer and "le" not in sample.labels:
                found[sample.name] = sample.value
    return found


async def test_metrics_show_depth_age_and_counts_per_consumer(
    lane: Lane, engine: AsyncEngine, settings: Settings
) -> None:
    ok, stalled = await lane.subscribe("metrics.ok", "metrics.stalled")
    flaky_failed: list[uuid.UUID] = []

    async def handler(session: AsyncSession, envelope: Envelope) -> None:
        if envelope.data["note"] == "doomed":
            raise RuntimeError("never works")
        if envelope.data["note"] == "flaky" and not flaky_failed:
            flaky_failed.append(envelope.id)
            raise RuntimeError("works the second time")
        await record_effect(session, ok, envelope)

    await lane.publish(note="flaky")
    await lane.publish(note="doomed")
    async with engine.begin() as conn:  # the stalled consumer's deliveries wait an hour (a backoff)
        await conn.execute(
            text("UPDATE queue.deliveries SET available_at = now() + interval '1 hour' WHERE consumer = :c"),
            {"c": stalled},
        )
    spec = ServiceSpec(
        name="probe",
        title="probe",
        description="",
        route_handlers=[],
        consumers=[Consumer(ok, handler), Consumer(stalled, handler)],
    )
    app = build_app(spec, dataclasses.replace(settings, queue_max_attempts=2), engine, run_workers=True)
    async with AsyncTestClient(app) as client:

        async def settled() -> tuple[dict[str, float], dict[str, float]] | None:
            body = (await client.get("/metrics")).text
            mine, theirs = _samples(body, ok), _samples(body, stalled)
            if mine.get("clinic_queue_dead_deliveries") == 1 and mine.get("clinic_queue_handled_total") == 1:
                return mine, theirs
            return None

        mine, theirs = await eventually(settled, what="the ok consumer settled and the snapshot caught up")
    assert mine["clinic_queue_retried_total"] == 2  # the flaky one once, the doomed one once
    assert mine["clinic_queue_dead_total"] == 1
    assert mine["clinic_queue_pending_deliveries"] == 0
    assert mine["clinic_queue_oldest_pending_age_seconds"] == 0
    assert mine["clinic_queue_handling_seconds_count"] >= 1
    assert theirs["clinic_queue_pending_deliveries"] == 2
    assert theirs["clinic_queue_oldest_pending_age_seconds"] > 0
    assert theirs["clinic_queue_dead_deliveries"] == 0
    assert "clinic_queue_handled_total" not in theirs or theirs["clinic_queue_handled_total"] == 0


async def test_a_claimed_delivery_still_counts_as_pending(lane: Lane, engine: AsyncEngine) -> None:
    """A worker's claim moves its batch out of the deliveries table until it is handled: the
    depth on /metrics still counts it, and its age."""
    from prometheus_client import REGISTRY, generate_latest

    from services.common.queue.metrics import refresh_depth

    [consumer] = await lane.subscribe("metrics.claimed")
    await lane.publish(2)

    async def depth() -> tuple[float, bool]:
        await refresh_depth(engine, [consumer])
        samples = _samples(generate_latest(REGISTRY).decode(), consumer)
        age = samples["clinic_queue_oldest_pending_age_seconds"]
        return samples["clinic_queue_pending_deliveries"], age > 0

    seen: list[tuple[float, bool]] = []

    async def look(session: AsyncSession, envelope: Envelope) -> None:
        seen.append(await depth())

    assert await QueueWorker(engine, lane.database_url, Consumer(consumer, look), FAST).drain_once() == 2
    assert seen == [(2, True), (2, True)]  # both in the claim until the batch commits
    assert await depth() == (0, False)


async def _backdate(engine: AsyncEngine, event_ids: list[uuid.UUID], hours: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE queue.events SET recorded_at = now() - make_interval(hours => :h) "
                "WHERE id = ANY(:ids)"
            ),
            {"h": hours, "ids": event_ids},
        )


async def test_retention_removes_old_handled_events_but_keeps_keys_and_owed_events(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    [consumer] = await lane.subscribe("retention")
    key = f"retention-{uuid.uuid4()}"
    [handled] = await lane.publish(key=key)
    assert await QueueWorker(engine, database_url, recording(consumer), FAST).drain_once() == 1
    pending, dead = await lane.publish(2)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE queue.deliveries SET status = 'dead' WHERE consumer = :c AND event_id = :e"),
            {"c": consumer, "e": dead},
        )
    [recent] = await lane.publish()
    await _backdate(engine, [handled, pending, dead], hours=3)  # `recent` is within the retention

    assert await prune(engine, retention_hours=2) == 1
    async with engine.connect() as conn:
        left = set(
            (
                await conn.execute(
                    text("SELECT id FROM queue.events WHERE type = :t"), {"t": lane.payload_type.TYPE}
                )
            ).scalars()
        )
        key_kept = await conn.scalar(
            text("SELECT event_id FROM queue.event_keys WHERE event_key = :k"), {"k": key}
        )
    assert left == {pending, dead, recent}
    assert await lane.applied(consumer) == set()  # the inbox row went with its event
    assert key_kept == handled
    async with AsyncSession(engine) as session:  # the key still dedupes, for good
        assert await publish(session, lane.payload_type(n=9), subject=uuid.uuid4(), key=key) is None
        await session.commit()


async def test_only_one_process_prunes_at_a_time(lane: Lane, engine: AsyncEngine) -> None:
    [consumer] = await lane.subscribe("retention.lock")
    [old] = await lane.publish()
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM queue.deliveries WHERE consumer = :c"), {"c": consumer})
    await _backdate(engine, [old], hours=3)
    async with engine.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_xact_lock(7246391002)"))  # another pruner is at work
        assert await prune(engine, retention_hours=2) is None
        await holder.rollback()
    assert await asyncio.wait_for(prune(engine, retention_hours=2), timeout=30) == 1


async def test_queue_tables_are_tuned_for_churn(engine: AsyncEngine) -> None:
    rows = await query(
        engine,
        "SELECT c.relname, c.reloptions FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'queue' AND c.relkind = 'r'",
    )
    options = {r.relname: set(r.reloptions or []) for r in rows}
    assert {
        "autovacuum_vacuum_scale_factor=0.01",
        "autovacuum_vacuum_cost_delay=0",
        "fillfactor=50",
    } <= options["deliveries"]
    for table in ("events", "inbox"):
        assert "autovacuum_vacuum_insert_scale_factor=0.05" in options[table]


async def _manual_vacuums(engine: AsyncEngine) -> int:
    count = await query_value(
        engine,
        "SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = 'queue' AND relname = 'deliveries'",
    )
    return int(count or 0)


async def test_the_churning_deliveries_table_is_vacuumed_by_the_services(
    lane: Lane, engine: AsyncEngine, database_url: str
) -> None:
    """With autovacuum off (as on this machine's server) nothing else would reclaim the rows each
    claim and ack leave dead; the services' upkeep vacuums the table once enough have piled up."""
    from services.common.queue import vacuum_churn

    [consumer] = await lane.subscribe("churn")
    await lane.publish(60)
    worker = QueueWorker(engine, database_url, recording(consumer), FAST)
    while await worker.drain_once():
        pass
    before = await _manual_vacuums(engine)
    # The server's statistics count the dead rows within a second or so.
    vacuumed = await eventually(lambda: vacuum_churn(engine, dead_rows=60), what="a vacuum was due")
    assert vacuumed is not None and "queue.deliveries" in vacuumed
    await eventually(lambda: _more_vacuums(engine, before), what="the vacuum shows in the statistics")


async def _more_vacuums(engine: AsyncEngine, before: int) -> bool:
    return await _manual_vacuums(engine) > before
