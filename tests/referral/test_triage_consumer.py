"""An intake event becomes a triaged referral, once, with every reason and the patient snapshot."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.clock import FakeClock
from services.common.queue import redeliver
from services.vignettes import load_vignettes
from tests.referral.conftest import PublishIntake, referrals_for, wait_for


def _by_id(vignette_id: str, today) -> dict:
    return next(v for v in load_vignettes(today) if v.id == vignette_id).body


async def test_submitted_intake_becomes_a_referral_with_reasons_and_due_by(
    referral_client: AsyncClient, publish_intake: PublishIntake, clinician_headers, clock: FakeClock
) -> None:
    body = _by_id("P01", clock.now().date())
    intake_id = await publish_intake(body)
    [referral] = await wait_for(lambda: referrals_for(referral_client, clinician_headers, intake_id))
    assert referral["destination"] == "urgent_care"
    assert referral["priority"] == "stat"
    assert referral["status"] == "requested"
    assert referral["reasons"][0]["code"] == "CES-1"
    assert all(r["text"] and r["source"] for r in referral["reasons"])
    assert referral["ruleset_version"] == "v2"
    created = datetime.fromisoformat(referral["created_at"])
    assert datetime.fromisoformat(referral["due_by"]) - created == timedelta(hours=1)
    assert referral["patient"] == {
        "given_name": "Test",
        "family_name": "Patient",
        "birth_date": body["patient"]["birth_date"],
        "mrn": "VIG2-P01",
    }
    assert referral["history"][0]["status"] == "requested"
    assert referral["history"][0]["by"] == "triage"


async def test_unsure_answer_is_held_for_clinician_review(
    referral_client: AsyncClient, publish_intake: PublishIntake, clinician_headers, clock: FakeClock
) -> None:
    intake_id = await publish_intake(_by_id("P24", clock.now().date()))
    [referral] = await wait_for(lambda: referrals_for(referral_client, clinician_headers, intake_id))
    assert (referral["destination"], referral["status"], referral["priority"]) == (
        "clinician_review",
        "needs_review",
        "urgent",
    )
    assert referral["allowed_actions"] == ["cancel", "resolve"]


async def test_routine_referral_is_due_in_fourteen_days(
    referral_client: AsyncClient, publish_intake: PublishIntake, clinician_headers, clock: FakeClock
) -> None:
    intake_id = await publish_intake(_by_id("P05", clock.now().date()))
    [referral] = await wait_for(lambda: referrals_for(referral_client, clinician_headers, intake_id))
    assert referral["destination"] == "regenerative_medicine"
    due = datetime.fromisoformat(referral["due_by"]) - datetime.fromisoformat(referral["created_at"])
    assert due == timedelta(days=14)


async def test_redelivered_intake_event_creates_no_second_referral(
    referral_client: AsyncClient,
    publish_intake: PublishIntake,
    clinician_headers,
    clock: FakeClock,
    engine: AsyncEngine,
) -> None:
    intake_id = await publish_intake(_by_id("P06", clock.now().date()))
    await wait_for(lambda: referrals_for(referral_client, clinician_headers, intake_id))
    # Owe the event to the consumer again, as a lost ack or an expired lease would.
    async with engine.begin() as conn:
        event_id = (
            await conn.execute(
                text("SELECT id FROM queue.events WHERE subject = :s AND type = 'intake.submitted'"),
                {"s": intake_id},
            )
        ).scalar_one()
        await redeliver(conn, "referral.triage", event_id)

    async def redelivered() -> bool:
        async with engine.connect() as conn:
            owed = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM queue.deliveries "
                        "WHERE event_id = :e AND consumer = 'referral.triage'"
                    ),
                    {"e": event_id},
                )
            ).scalar()
        return owed == 0

    await wait_for(redelivered)
    assert len(await referrals_for(referral_client, clinician_headers, intake_id)) == 1


async def test_amendment_with_same_outcome_updates_reasons_in_place(
    referral_client: AsyncClient, publish_intake: PublishIntake, clinician_headers, clock: FakeClock
) -> None:
    body = _by_id("P12", clock.now().date())
    intake_id = await publish_intake(body)
    [first] = await wait_for(lambda: referrals_for(referral_client, clinician_headers, intake_id))
    body["conditions"] = ["spinal_stenosis", "osteoporosis"]
    await publish_intake(body, intake_id=intake_id, version=2, amended=True)

    async def updated() -> list:
        items = await referrals_for(referral_client, clinician_headers, intake_id)
        return items if items and items[0]["intake_version"] == 2 else []

    [same] = await wait_for(updated)
    assert same["id"] == first["id"]
    assert same["destination"] == "pain_management"
    assert "intake amended" in same["history"][-1]["note"]


async def test_amendment_with_new_outcome_supersedes_the_open_referral(
    referral_client: AsyncClient, publish_intake: PublishIntake, clinician_headers, clock: FakeClock
) -> None:
    body = _by_id("P12", clock.now().date())
    intake_id = await publish_intake(body)
    [old] = await wait_for(lambda: referrals_for(referral_client, clinician_headers, intake_id))
    body["red_flags"]["saddle_numbness"] = "yes"
    await publish_intake(body, intake_id=intake_id, version=2, amended=True)

    async def two() -> list:
        items = await referrals_for(referral_client, clinician_headers, intake_id)
        return items if len(items) == 2 else []

    items = await wait_for(two)
    new = next(r for r in items if r["id"] != old["id"])
    old_now = next(r for r in items if r["id"] == old["id"])
    assert new["destination"] == "urgent_care" and new["priority"] == "stat"
    assert new["supersedes"] == old["id"]
    assert old_now["superseded_by"] == new["id"]
    assert old_now["status"] == "cancelled"
    assert "superseded" in old_now["history"][-1]["note"]


async def test_unknown_referral_is_404(referral_client: AsyncClient, clinician_headers) -> None:
    response = await referral_client.get(f"/v1/referrals/{uuid.uuid4()}", headers=clinician_headers)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
