"""The queue consumer `referral.webhooks`: each event becomes one delivery per matching endpoint.

It runs inside the queue's transaction, so it only writes rows; the sender does the HTTP. What it
writes is the body subscribers will get, built here from the event and deliberately thin (the
minimum necessary): ids, destination, priority, status and dates. Never a name, a birth date, a
contact, a note or the clinical reasons: a subscriber fetches details with its own key.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts.events import (
    Envelope,
    IntakeSubmitted,
    Payload,
    ReferralAmended,
    ReferralCreated,
    ReferralFollowUpDue,
    ReferralStatusChanged,
)
from services.common.contracts.vocabulary import ConsumerName
from services.common.queue import Consumer
from services.referral.webhooks.sender import SENDER_CHANNEL

CONSUMER_NAME = ConsumerName.REFERRAL_WEBHOOKS


#: What leaves the clinic, per event type: an allow-list of fields, so a field added to an event
#: later stays inside until someone decides it may go out.
THIN_FIELDS: dict[type[Payload], tuple[str, ...]] = {
    IntakeSubmitted: ("intake_id", "intake_version", "submitted_at"),
    ReferralCreated: (
        "referral_id",
        "intake_id",
        "intake_version",
        "destination",
        "priority",
        "status",
        "due_by",
        "created_at",
        "supersedes",
    ),
    ReferralStatusChanged: (
        "referral_id",
        "intake_id",
        "destination",
        "priority",
        "status",
        "previous_status",
        "changed_at",
        "due_by",
        "superseded_by",
    ),
    ReferralAmended: (
        "referral_id",
        "intake_id",
        "intake_version",
        "action",
        "destination",
        "priority",
        "proposed_destination",
        "proposed_priority",
        "amended_at",
        "hold_id",
        "superseded_by",
        "after_resolve",
    ),
    ReferralFollowUpDue: ("referral_id", "intake_id", "follow_up_id", "destination", "due_on"),
}


def thin_data(payload: Payload) -> tuple[dict[str, Any], str | None] | None:
    """The `data` subscribers get for `payload`, and the destination it concerns (None if none);
    None for an event type that is not sent out."""
    fields = THIN_FIELDS.get(type(payload))
    if fields is None:
        return None
    data = {name: getattr(payload, name) for name in fields}
    destination = data.get("destination")
    return msgspec.to_builtins(data), str(destination) if destination is not None else None


def webhook_body(envelope: Envelope) -> tuple[dict[str, Any], str | None] | None:
    """`{"type", "timestamp", "data"}` for the event, and the destination it concerns."""
    thin = thin_data(envelope.payload())
    if thin is None:
        return None
    data, destination = thin
    body = {
        "type": envelope.type,
        "timestamp": msgspec.to_builtins(envelope.occurred_at.astimezone(UTC)),
        "data": data,
    }
    return body, destination


# The deliveries, and a NOTIFY that wakes the sender once they are committed (only if any).
_ENQUEUE = text(
    """
    WITH enqueued AS (
        INSERT INTO referral.webhook_deliveries (id, endpoint_id, event_id, event_type, payload)
        SELECT gen_random_uuid(), e.id, :event_id, :event_type, CAST(:payload AS jsonb)
        FROM referral.webhook_endpoints e
        WHERE e.disabled_at IS NULL AND e.deleted_at IS NULL
          AND :event_type = ANY(e.event_types)
          AND (e.destinations IS NULL OR CAST(:destination AS text) = ANY(e.destinations))
        -- Locked so a concurrent disable or delete either waits for this commit (and then sends
        -- these deliveries to the dead list with the rest) or commits first (and this skips it):
        -- never a pending delivery for an endpoint that no longer gets any.
        FOR SHARE OF e
        ON CONFLICT (endpoint_id, event_id) DO NOTHING
        RETURNING 1
    )
    SELECT pg_notify(:channel, '') FROM (SELECT 1 FROM enqueued LIMIT 1) AS any_delivery
    """
)


async def enqueue_deliveries(session: AsyncSession, envelope: Envelope) -> None:
    """One pending delivery per enabled endpoint subscribed to this event type (and destination:
    an endpoint filtered by destination gets only events about one of its destinations)."""
    built = webhook_body(envelope)
    if built is None:
        return
    body, destination = built
    await session.execute(
        _ENQUEUE,
        {
            "event_id": envelope.id,
            "event_type": envelope.type,
            "payload": msgspec.json.encode(body).decode(),
            "destination": destination,
            "channel": SENDER_CHANNEL,
        },
    )


consumer = Consumer(name=CONSUMER_NAME, handler=enqueue_deliveries)
