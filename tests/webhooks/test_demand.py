"""The queue owes the webhook consumer only events some enabled endpoint subscribes to; an
endpoint never misses an event published after its registration."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.access.secret_box import secret_box
from services.common.queue import publish, refresh_demand
from services.common.settings import Settings
from services.referral.webhooks import schemas
from services.referral.webhooks.consumer import CONSUMER_NAME
from services.referral.webhooks.service import create_endpoint
from services.referral.webhooks.ssrf import TargetGuard
from tests.conftest import eventually, query_value
from tests.webhooks.support import Receiver, referral_created

Create = Callable[..., Awaitable[dict[str, Any]]]


async def _owed(engine: AsyncEngine, event_id: uuid.UUID | None) -> set[str]:
    """The consumers the queue owes this event to."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT consumer FROM queue.deliveries WHERE event_id = :e"), {"e": event_id}
        )
        return set(rows.scalars())


async def _publish_one(engine: AsyncEngine) -> uuid.UUID | None:
    event = referral_created()
    async with AsyncSession(engine) as session:
        event_id = await publish(session, event, subject=event.referral_id)
        await session.commit()
    return event_id


async def test_no_webhook_work_while_no_endpoint_subscribes_to_the_type(
    engine: AsyncEngine, endpoints: Create, receiver: Receiver
) -> None:
    url, _ = receiver.route()
    await endpoints(url, ["referral.status_changed"])  # another type only
    event_id = await _publish_one(engine)
    assert event_id is not None
    owed = await _owed(engine, event_id)
    assert CONSUMER_NAME not in owed
    assert "intake.referral_mirror" in owed  # the other consumers are owed it as before


async def test_an_endpoint_gets_work_for_events_published_after_it_was_created_and_none_after_deletion(
    engine: AsyncEngine, endpoints: Create, receiver: Receiver, client: Any, admin: dict[str, str]
) -> None:
    url, _ = receiver.route()
    endpoint = await endpoints(url, ["referral.created"])
    assert CONSUMER_NAME in await _owed(engine, await _publish_one(engine))
    assert (await client.delete(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=admin)).status_code == 204
    assert CONSUMER_NAME not in await _owed(engine, await _publish_one(engine))


async def test_a_publish_racing_an_endpoints_registration_is_owed_to_it_if_it_commits_after(
    engine: AsyncEngine, receiver: Receiver, settings: Settings
) -> None:
    """The registration's transaction is open (endpoint written, not committed) when another
    transaction publishes; that publish waits, and since it commits after the registration, the
    new endpoint is owed its event."""
    url, _ = receiver.route()
    registering = AsyncSession(engine)
    try:
        await create_endpoint(
            registering,
            schemas.WebhookEndpointCreate(url=url, event_types=["referral.created"]),
            TargetGuard.from_allow_list(["127.0.0.1", "localhost"]),
            "test",
            secret_box(settings),
        )
        racing = asyncio.create_task(_publish_one(engine))
        await eventually(lambda: _waiting_on_subscriptions(engine))  # the publish is under way
        await registering.commit()
        event_id = await racing
        assert CONSUMER_NAME in await _owed(engine, event_id)
    finally:
        await registering.close()
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM referral.webhook_endpoints WHERE url = :u"), {"u": url})
            await refresh_demand(conn, CONSUMER_NAME)


async def _waiting_on_subscriptions(engine: AsyncEngine) -> bool:
    waiting = await query_value(
        engine,
        "SELECT count(*) FROM pg_locks "
        "WHERE NOT granted AND relation = CAST('queue.subscriptions' AS regclass)",
    )
    return bool(waiting)
