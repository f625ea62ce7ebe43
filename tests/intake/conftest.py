"""Fixtures for the intake service: an app on the test database, keys by role, form factories,
and row counts to show that a refused request stored nothing."""

from __future__ import annotations

import copy
import datetime
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.settings import Settings
from services.intake.app import create_app
from tests.conftest import MakeKey, auth
from tests.unit.test_intake_body import API_EXAMPLE

TODAY = datetime.datetime.now(datetime.UTC).date()

#: Every table a submission writes, and the queue's events.
STORED_TABLES = (
    "intake.patients",
    "intake.patient_changes",
    "intake.intakes",
    "intake.intake_versions",
    "intake.idempotency_keys",
    "queue.events",
)


def unique_mrn() -> str:
    return f"MRN-{uuid.uuid4().hex[:12]}"


def intake_form(mrn: str | None = None, **top: Any) -> dict[str, Any]:
    """The example body of API.md with a fresh MRN (or the one given); `top` replaces top-level
    fields."""
    form = copy.deepcopy(API_EXAMPLE)
    form["patient"]["mrn"] = mrn or unique_mrn()
    form["complaint"]["onset_date"] = (TODAY - datetime.timedelta(days=60)).isoformat()
    form.update(copy.deepcopy(top))
    return form


Counts = Callable[[], Awaitable[dict[str, int]]]


@pytest.fixture
def row_counts(engine: AsyncEngine) -> Counts:
    async def count() -> dict[str, int]:
        async with engine.connect() as conn:
            return {
                table: int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
                for table in STORED_TABLES
            }

    return count


@pytest.fixture
async def client(settings: Settings, engine: AsyncEngine) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(settings, engine)) as test_client:
        yield test_client


@pytest.fixture
async def front_desk(make_key: MakeKey) -> dict[str, str]:
    return auth(await make_key("front_desk", name=f"reception-{uuid.uuid4().hex[:6]}"))


async def events_for(engine: AsyncEngine, subject: str | uuid.UUID) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT type, payload FROM queue.events WHERE subject = CAST(:s AS uuid) ORDER BY occurred_at"
            ),
            {"s": str(subject)},
        )
        return [{"type": r.type, "data": r.payload} for r in rows]
