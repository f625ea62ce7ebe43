"""Upkeep: the patient data dropped from events every consumer has handled, handled events pruned
after the retention period, and the churning tables vacuumed even where autovacuum is off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.clock import first_of as _first_of
from services.common.contracts.events import PATIENT_FIELDS

log = structlog.get_logger(__name__)
_RETENTION_LOCK = 7_246_391_002

# An event goes once it is older than the retention and no delivery of it is left, owed or in a
# worker's claim (every consumer handled it; a dead delivery keeps it for replay). The consumers'
# inbox rows go with it, since nothing can deliver it again. Its key stays in event_keys for good.
_PRUNE = text(
    """
    WITH gone AS (
        DELETE FROM queue.events WHERE id IN (
            SELECT e.id FROM queue.events e
            WHERE e.recorded_at < now() - make_interval(hours => :hours)
              AND NOT EXISTS (SELECT 1 FROM queue.owed o WHERE o.event_id = e.id)
            ORDER BY e.recorded_at
            LIMIT :batch
        )
        RETURNING id
    ), applied AS (
        DELETE FROM queue.inbox i USING gone WHERE i.event_id = gone.id
    )
    SELECT count(*) FROM gone
    """
)


async def prune(engine: AsyncEngine, retention_hours: float, *, batch: int = 5000) -> int | None:
    """Delete handled events older than the retention (and their inbox rows), in transactions of
    at most `batch` events; return how many. None when another process is pruning right now."""
    removed = 0
    while True:
        async with engine.begin() as conn:
            if not await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _RETENTION_LOCK}):
                return None
            count = int(await conn.scalar(_PRUNE, {"hours": retention_hours, "batch": batch}) or 0)
        removed += count
        if count < batch:
            return removed


# Minimum necessary: an event that carries patient data (the intake form) keeps it only while a
# delivery of it is owed or in a worker's claim. Once no delivery is left (every consumer handled
# it; a claim moves the delivery out of `deliveries`, and handling deletes the claim) its patient
# fields are dropped and `redacted_at` is added; the ids, type and times stay,
# so the event still counts for retention, keys and the inbox. A pending or dead delivery keeps the
# whole payload, so a retry or a replay from the dead letters still has the form. Deliveries of an
# event are only ever written with it (publish) or re-owed by `redeliver` to a consumer whose
# inbox already holds it, which then only acks it: nothing handles a redacted event. Redacted
# payloads are small (no longer TOASTed), so the scan costs little on every pass. A claim that
# lapses puts its deliveries back, so an event in a claim keeps its form like an owed one.
_REDACT = text(
    """
    WITH due AS (
        SELECT e.id FROM queue.events e
        WHERE e.type = :type
          AND e.payload ?| CAST(:fields AS text[])
          AND NOT EXISTS (SELECT 1 FROM queue.owed o WHERE o.event_id = e.id)
        ORDER BY e.recorded_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ), redacted AS (
        UPDATE queue.events e
        SET payload = (e.payload - CAST(:fields AS text[]))
                      || jsonb_build_object('redacted_at', to_jsonb(now()))
        FROM due WHERE e.id = due.id
        RETURNING e.id
    )
    SELECT count(*) FROM redacted
    """
)
_REDACT_LOCK = 7_246_391_004


async def redact_handled(
    engine: AsyncEngine, fields: Mapping[str, Sequence[str]] = PATIENT_FIELDS, *, batch: int = 5000
) -> int | None:
    """Drop `fields` (by event type) from every event no delivery is owed for, in transactions of
    at most `batch` events; return how many. None when another process is doing it right now."""
    redacted = 0
    for event_type, names in fields.items():
        while True:
            async with engine.begin() as conn:
                if not await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _REDACT_LOCK}):
                    return None
                count = int(
                    await conn.scalar(_REDACT, {"type": event_type, "fields": list(names), "batch": batch})
                    or 0
                )
            redacted += count
            if count < batch:
                break
    return redacted


#: Tables whose rows churn (a claim deletes deliveries and inserts a claim; handling deletes the
#: claim). Their dead rows slow every claim down until a VACUUM reclaims them, so the services
#: vacuum them themselves once `VACUUM_DEAD_ROWS` have piled up, whether autovacuum runs on the
#: server or not.
CHURNING_TABLES = ("queue.deliveries", "queue.claims")
VACUUM_DEAD_ROWS = 20_000
_VACUUM_LOCK = 7_246_391_003
_DEAD_ROWS = text(
    "SELECT schemaname || '.' || relname FROM pg_stat_user_tables "
    "WHERE schemaname || '.' || relname = ANY(CAST(:tables AS text[])) AND n_dead_tup >= :dead"
)


async def vacuum_churn(
    engine: AsyncEngine, tables: Sequence[str] = CHURNING_TABLES, *, dead_rows: int = VACUUM_DEAD_ROWS
) -> list[str] | None:
    """VACUUM (ANALYZE) those of `tables` with at least `dead_rows` dead rows; return them. None
    when another process is doing it right now."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        if not await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": _VACUUM_LOCK}):
            return None
        try:
            found = await conn.execute(_DEAD_ROWS, {"tables": list(tables), "dead": dead_rows})
            due = list(found.scalars())
            for table in due:  # names from pg_stat_user_tables matching our own constants
                await conn.execute(text(f"VACUUM (ANALYZE) {table}"))
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _VACUUM_LOCK})
    return due


async def run_retention(
    engine: AsyncEngine,
    retention_hours: float,
    stop: asyncio.Event,
    *,
    interval: float = 300.0,
    vacuum_every: float = 15.0,
) -> None:
    """Until `stop`: prune every `interval` seconds, and every `vacuum_every` seconds drop the
    patient data of handled events and vacuum the churning tables that need it. Every service may
    run this: one process does each job at a time (advisory locks), the others skip that round."""
    next_prune = 0.0
    while not stop.is_set():
        if time.monotonic() >= next_prune:
            next_prune = time.monotonic() + interval
            await _logged("prune", partial(prune, engine, retention_hours), done="queue_pruned", key="events")
        await _logged("redact", partial(redact_handled, engine), done="queue_redacted", key="events")
        await _logged("vacuum", partial(vacuum_churn, engine), done="queue_vacuumed", key="tables")
        await _first_of(min(interval, vacuum_every), stop)


async def _logged(job: str, run: Callable[[], Awaitable[object]], *, done: str, key: str) -> None:
    """Run one upkeep job: log what it did (`done`, its result as `key`) when it did anything, and
    a failure as `queue_<job>_failed` (its error type only) without ending the loop."""
    try:
        result = await run()
        if result:
            log.info(done, **{key: result})
    except Exception as exc:
        log.warning(f"queue_{job}_failed", error_type=type(exc).__name__)
