"""Fixtures for the webhook tests: a live receiver, the webhook API, endpoints cleaned up after."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.http.web import ServiceSpec, build_app
from services.common.settings import Settings
from services.referral.webhooks import route_handlers
from tests.conftest import MakeKey, auth
from tests.webhooks.support import Hooks, Receiver, drain_backlog


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.thread.start()
    yield rec
    rec.release_all()
    rec.server.shutdown()
    rec.server.server_close()


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    """Retries a second apart, so a test sees the whole schedule quickly."""
    return dataclasses.replace(settings, webhook_retry_schedule=(1, 1, 1), webhook_timeout_seconds=5.0)


@pytest.fixture
async def admin(make_key: MakeKey) -> dict[str, str]:
    return auth(await make_key("admin"))


@pytest.fixture
async def client(fast_settings: Settings, engine: AsyncEngine) -> AsyncIterator[AsyncTestClient[Any]]:
    """The webhook API alone (as the referral service serves it), on the test database."""
    spec = ServiceSpec(name="referral", title="referral", description="", route_handlers=route_handlers)
    async with AsyncTestClient(build_app(spec, fast_settings, engine, run_workers=False)) as test_client:
        yield test_client


async def remove_every_endpoint(client: AsyncTestClient[Any], admin: dict[str, str]) -> None:
    while items := (await client.get("/v1/webhooks/endpoints?limit=200", headers=admin)).json()["items"]:
        for item in items:
            gone = await client.delete(f"/v1/webhooks/endpoints/{item['id']}", headers=admin)
            assert gone.status_code == 204, gone.text


@pytest.fixture
async def endpoints(
    client: AsyncTestClient[Any], admin: dict[str, str], engine: AsyncEngine, database_url: str
) -> AsyncIterator[Callable[..., Awaitable[dict[str, Any]]]]:
    """Create endpoints through the API; every one is deleted after the test (the database is
    shared, and a leftover endpoint would receive later tests' events). Endpoints another test
    left behind (one that crashed, say) are removed first, so they do not share this test's events."""
    created: list[str] = []
    await remove_every_endpoint(client, admin)
    await drain_backlog(engine, database_url)

    async def create(url: str, event_types: list[str], **extra: Any) -> dict[str, Any]:
        response = await client.post(
            "/v1/webhooks/endpoints", json={"url": url, "event_types": event_types, **extra}, headers=admin
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        created.append(body["id"])
        return body

    yield create
    for endpoint_id in created:
        await client.delete(f"/v1/webhooks/endpoints/{endpoint_id}", headers=admin)


@pytest.fixture
async def hooks(
    receiver: Receiver,
    client: AsyncTestClient[Any],
    admin: dict[str, str],
    engine: AsyncEngine,
    database_url: str,
    fast_settings: Settings,
    endpoints: Callable[..., Awaitable[dict[str, Any]]],
) -> Hooks:
    return Hooks(receiver, client, admin, engine, database_url, fast_settings, endpoints)
