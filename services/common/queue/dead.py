"""Dead letters: the deliveries whose attempts ran out, listed for operators and replayed."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

import msgspec
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.queue.publish import channel_for

log = structlog.get_logger(__name__)


class DeadDelivery(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    consumer: str
    event_id: uuid.UUID
    event_type: str
    subject: uuid.UUID
    attempts: int
    last_error: str | None
    occurred_at: datetime
    updated_at: datetime


# `:names` NULL: every consumer's deliveries; else only those consumers'.
_DEAD_PAGE = text(
    "SELECT d.id, d.consumer, d.event_id, e.type AS event_type, e.subject, d.attempts, "
    "d.last_error, e.occurred_at, d.updated_at FROM queue.deliveries d "
    "JOIN queue.events e ON e.id = d.event_id WHERE d.status = 'dead' "
    "AND (CAST(:names AS text[]) IS NULL OR d.consumer = ANY(CAST(:names AS text[]))) "
    "AND (CAST(:before AS bigint) IS NULL OR d.id < CAST(:before AS bigint)) "
    "ORDER BY d.id DESC LIMIT :limit"
)
_REPLAY = text(
    "UPDATE queue.deliveries SET status = 'pending', attempts = 0, available_at = now(), "
    "updated_at = now() WHERE id = :id AND status = 'dead' "
    "AND (CAST(:names AS text[]) IS NULL OR consumer = ANY(CAST(:names AS text[]))) "
    "RETURNING id, consumer, event_id"
)


def _names(consumers: Iterable[str] | None) -> list[str] | None:
    return list(consumers) if consumers is not None else None


async def dead_deliveries(
    conn: AsyncConnection,
    consumers: Iterable[str] | None = None,
    *,
    limit: int = 500,
    before_id: int | None = None,
) -> list[DeadDelivery]:
    """Dead deliveries, newest first (by id); `before_id` pages on from a previous page's last id."""
    params = {"names": _names(consumers), "before": before_id, "limit": limit}
    return [DeadDelivery(**row._asdict()) for row in (await conn.execute(_DEAD_PAGE, params)).all()]


async def replay_dead(
    conn: AsyncConnection, delivery_id: int, consumers: Iterable[str] | None = None
) -> bool:
    """Re-queue a dead delivery with a fresh set of attempts; False if there is no such dead
    delivery (among `consumers`, when given). The caller commits; workers hear of it then."""
    row = (await conn.execute(_REPLAY, {"id": delivery_id, "names": _names(consumers)})).first()
    if row is None:
        return False
    await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel_for(row.consumer)})
    log.info("event_replayed", delivery_id=row.id, consumer=row.consumer, event_id=str(row.event_id))
    return True


async def redeliver(conn: AsyncConnection, consumer: str, event_id: uuid.UUID) -> None:
    """Owe an event to a consumer again, as a lapsed claim would (tests and operators); the
    consumer's inbox keeps an event it has applied from having a second effect."""
    await conn.execute(
        text(
            "INSERT INTO queue.deliveries (event_id, consumer) VALUES (:e, :c) "
            "ON CONFLICT (event_id, consumer) DO UPDATE SET status = 'pending', available_at = now()"
        ),
        {"e": event_id, "c": consumer},
    )
    await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel_for(consumer)})


# -- retention -------------------------------------------------------------------------------
