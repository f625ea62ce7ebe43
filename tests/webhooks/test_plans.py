"""The sender's statements find an endpoint's next due delivery by index, whatever its backlog,
even on a table the planner has no statistics for (a server whose autovacuum has not run)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.referral.webhooks.bookkeeping import CLAIM, RECORD_SUCCESS_AND_CLAIM_NEXT
from tests.conftest import plan_without_statistics

BACKLOG = 5000

STATEMENTS = {
    "claim": CLAIM.text,
    "record_success_and_claim_next": RECORD_SUCCESS_AND_CLAIM_NEXT.sql,
}


@pytest.mark.parametrize("name", list(STATEMENTS))
async def test_the_next_delivery_of_an_endpoint_is_not_a_sort_of_its_backlog(
    engine: AsyncEngine, name: str
) -> None:
    """5,000 deliveries waiting for one endpoint, in a fresh copy of the table (never analysed):
    the plan walks an index in due order and stops; it neither scans the table nor sorts the
    endpoint's backlog (which made every delivery sent cost more as the backlog grew)."""
    endpoint = uuid.uuid4()
    values = {
        "busy_ids": [],
        "busy_counts": [],
        "per_endpoint": 2,
        "limit": 10,
        "lease": 60,
        "max_attempts": 10,
        "id": uuid.uuid4(),
        "endpoint_id": endpoint,
        "status_code": 204,
        "latency_ms": 1,
        "excerpt": None,
    }
    text_plan = await plan_without_statistics(
        engine,
        "referral.webhook_deliveries",
        "INSERT INTO pg_temp.webhook_deliveries (id, endpoint_id, event_id, event_type, payload) "
        f"SELECT gen_random_uuid(), '{endpoint}', gen_random_uuid(), 'referral.created', '{{}}' "
        f"FROM generate_series(1, {BACKLOG})",
        STATEMENTS[name],
        values,
    )
    plan = text_plan.splitlines()
    on_deliveries = [line for line in plan if "webhook_deliveries" in line]
    assert on_deliveries, text_plan
    assert not any("Seq Scan" in line or "Bitmap" in line for line in on_deliveries), text_plan
    assert " Sort " not in text_plan and "Sort Key" not in text_plan, text_plan
