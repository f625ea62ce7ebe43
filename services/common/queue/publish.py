"""Publishing: an event, its key and one delivery per consumer that wants it, in the caller's
transaction; the NOTIFY channel of each consumer; the webhook demand that decides who wants it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

import msgspec
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.common.contracts.events import CONSUMERS, DEMAND, Payload
from services.common.db.driver import Driver, Statement, driver_of

log = structlog.get_logger(__name__)

CHANNEL_PREFIX = "clinic_queue."


def channel_for(consumer: str) -> str:
    """The NOTIFY channel a consumer's workers listen on (PostgreSQL keeps 63 bytes of it)."""
    return (CHANNEL_PREFIX + consumer)[:63]


# -- publishing ------------------------------------------------------------------------------

_PUBLISH = Statement(
    """
    WITH key AS (
        INSERT INTO queue.event_keys (event_key, event_id)
        SELECT CAST(:key AS text), CAST(:id AS uuid) WHERE CAST(:key AS text) IS NOT NULL
        ON CONFLICT (event_key) DO NOTHING
        RETURNING event_id
    ), ev AS (
        INSERT INTO queue.events (id, type, version, subject, payload, occurred_at, event_key)
        SELECT CAST(:id AS uuid), :type, :version, CAST(:subject AS uuid), CAST(:payload AS jsonb),
               :occurred_at, CAST(:key AS text)
        WHERE CAST(:key AS text) IS NULL OR EXISTS (SELECT 1 FROM key)
        RETURNING id, type
    ), fan AS (
        INSERT INTO queue.deliveries (event_id, consumer)
        SELECT ev.id, s.consumer FROM ev JOIN queue.subscriptions s ON s.event_type = ev.type AND s.wanted
        RETURNING consumer
    )
    SELECT (SELECT count(*) FROM ev) AS events,
           (SELECT count(pg_notify(left(:prefix || fan.consumer, 63), '')) FROM fan) AS deliveries
    """
)


def _publish_values(
    event_id: uuid.UUID, payload: Payload, subject: uuid.UUID, key: str | None, occurred_at: datetime
) -> dict[str, object]:
    return {
        "id": event_id,
        "type": payload.TYPE,
        "version": payload.VERSION,
        "subject": subject,
        "payload": msgspec.json.encode(payload).decode(),
        "occurred_at": occurred_at,
        "key": key,
        "prefix": CHANNEL_PREFIX,
    }


async def publish(
    db: AsyncSession | Driver,
    payload: Payload,
    *,
    subject: uuid.UUID,
    key: str | None = None,
    occurred_at: datetime | None = None,
) -> uuid.UUID | None:
    """Record `payload` as an event in the caller's transaction (a session's, or the one a
    `Driver` is in); return its id.

    With a `key`, publishing is idempotent for good: a key seen before (even long ago, after the
    event itself was pruned) publishes nothing and returns None, without disturbing the caller's
    transaction (ON CONFLICT DO NOTHING, no error raised inside it).
    """
    event_id = uuid.uuid4()
    driver = db if isinstance(db, Driver) else await driver_of(db)
    values = _publish_values(event_id, payload, subject, key, occurred_at or datetime.now(UTC))
    row = await driver.fetchrow(_PUBLISH, values)
    if row is None or row["events"] == 0:
        log.info("event_publish_skipped_duplicate_key", event_type=payload.TYPE)
        return None
    return event_id


async def publish_many(
    conn: AsyncConnection, events: Sequence[tuple[Payload, uuid.UUID]], *, occurred_at: datetime | None = None
) -> None:
    """Record several keyless events (payload, subject) in the caller's transaction, in order, in
    one round trip (a pipelined executemany of the statement `publish` runs for each)."""
    if not events:
        return
    at = occurred_at or datetime.now(UTC)
    driver = await driver_of(conn)
    rows = [_publish_values(uuid.uuid4(), payload, subject, None, at) for payload, subject in events]
    await driver.executemany(_PUBLISH, rows)


async def sync_subscriptions(
    conn: AsyncConnection, consumers: Mapping[str, Iterable[str]] = CONSUMERS
) -> None:
    """Make the subscription table say what the code says (run by `clinic migrate`)."""
    for consumer, types in consumers.items():
        for event_type in types:
            await conn.execute(
                text(
                    "INSERT INTO queue.subscriptions (consumer, event_type) VALUES (:c, :t) "
                    "ON CONFLICT DO NOTHING"
                ),
                {"c": consumer, "t": event_type},
            )


async def refresh_demand(conn: AsyncConnection | AsyncSession, consumer: str) -> None:
    """Mark which of `consumer`'s subscriptions are wanted now (its `DEMAND` query), in the
    caller's transaction.

    No event published after the caller commits may miss a subscription it turned on. So this
    first takes the subscription table exclusively: that waits for every transaction that has
    already published (and read the old state) to end, and holds off every publish until the
    caller commits; a publish waiting on the lock takes its snapshot only once it has it, so it
    sees the new state. Only the callers that change demand (webhook endpoint changes) pay this,
    for as long as their transaction lasts; at most `lock_timeout` (5 s) is spent waiting."""
    await conn.execute(text("SELECT set_config('lock_timeout', '5s', true)"))
    await conn.execute(text("LOCK TABLE queue.subscriptions IN ACCESS EXCLUSIVE MODE"))
    wanted = list((await conn.execute(text(DEMAND[consumer]))).scalars())
    await conn.execute(
        text(
            "UPDATE queue.subscriptions SET wanted = (event_type = ANY(CAST(:wanted AS text[]))) "
            "WHERE consumer = :c AND wanted IS DISTINCT FROM (event_type = ANY(CAST(:wanted AS text[])))"
        ),
        {"c": consumer, "wanted": wanted},
    )


# -- consuming -------------------------------------------------------------------------------
