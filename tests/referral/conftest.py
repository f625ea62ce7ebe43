from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.clock import FakeClock
from services.common.contracts.events import IntakeAmended, IntakeSubmitted
from services.common.contracts.intake_body import IntakeBody
from services.common.queue import publish
from services.common.settings import Settings
from services.referral.app import create_app
from tests.conftest import MakeKey, auth, serve

PublishIntake = Callable[..., Awaitable[uuid.UUID]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def referral_client(
    settings: Settings, engine: AsyncEngine, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    """The referral service with its consumers running, on the test database."""
    app = create_app(settings, engine, run_workers=True, clock=clock)
    async with serve(app) as client:
        yield client


@pytest.fixture
def publish_intake(engine: AsyncEngine) -> PublishIntake:
    """Publish an intake event as the intake service does; return the intake id."""

    async def run(
        body: dict[str, Any] | IntakeBody,
        *,
        intake_id: uuid.UUID | None = None,
        version: int = 1,
        amended: bool = False,
    ) -> uuid.UUID:
        import msgspec

        intake = body if isinstance(body, IntakeBody) else msgspec.convert(body, IntakeBody)
        intake_id = intake_id or uuid.uuid4()
        kind = IntakeAmended if amended else IntakeSubmitted
        payload = kind(
            intake_id=intake_id,
            patient_id=uuid.uuid4(),
            intake_version=version,
            submitted_at=datetime.now(UTC),
            submitted_by="reception",
            intake=intake,
        )
        async with AsyncSession(engine) as session:
            await publish(session, payload, subject=intake_id)
            await session.commit()
        return intake_id

    return run


async def wait_for(check: Callable[[], Awaitable[Any]], *, timeout: float = 15.0) -> Any:
    """Poll `check` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.05)


@pytest.fixture
async def clinician_headers(make_key: MakeKey) -> dict[str, str]:
    return auth(await make_key("clinician"))


async def referrals_for(
    client: httpx.AsyncClient, headers: dict[str, str], intake_id: uuid.UUID
) -> list[dict]:
    response = await client.get("/v1/referrals", params={"intake_id": str(intake_id)}, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])
