"""The referral service serves the webhook API and runs the webhook consumer and sender."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.settings import Settings
from services.referral.app import create_app
from tests.webhooks.support import Receiver, drain_backlog, messages, publish_events, referral_created


async def test_referral_service_delivers_webhooks_with_its_own_workers(
    receiver: Receiver, admin: dict[str, str], fast_settings: Settings, engine: AsyncEngine, database_url: str
) -> None:
    url, route = receiver.route()
    await drain_backlog(engine, database_url)
    async with AsyncTestClient(create_app(fast_settings, engine, run_workers=True)) as client:
        response = await client.post(
            "/v1/webhooks/endpoints", json={"url": url, "event_types": ["referral.created"]}, headers=admin
        )
        assert response.status_code == 201, response.text
        endpoint: dict[str, Any] = response.json()
        route.secrets = [endpoint["secret"]]
        try:
            event = referral_created()
            await publish_events(engine, event)
            [message] = await messages(receiver, url, 1, event)
            assert message.verified_by == [endpoint["secret"]]
            assert (await client.get("/health/ready")).json()["checks"]["workers"] == "ok"
        finally:
            await client.delete(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=admin)
