from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
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
from tests.referral.support import Desk, PublishIntake, Team, make_team


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
            intake=intake,
        )
        async with AsyncSession(engine) as session:
            await publish(session, payload, subject=intake_id)
            await session.commit()
        return intake_id

    return run


@pytest.fixture
async def team(make_key: MakeKey) -> Team:
    return await make_team(make_key)


@pytest.fixture
def desk(
    referral_client: httpx.AsyncClient,
    publish_intake: PublishIntake,
    team: Team,
    clock: FakeClock,
    engine: AsyncEngine,
) -> Desk:
    return Desk(referral_client, publish_intake, team, clock, engine)


@pytest.fixture
async def clinician_headers(make_key: MakeKey) -> dict[str, str]:
    return auth(await make_key("clinician"))
