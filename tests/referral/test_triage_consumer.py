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
from tests.conftest import eventually, query_value
from tests.referral.support import Desk, PublishIntake, referrals_for


def _by_id(vignette_id: str, today) -> dict:
    return next(v for v in load_vignettes(today) if v.id == vignette_id).body


async def test_submitted_intake_becomes_a_referral_with_reasons_and_due_by(
    referral_client: AsyncClient, publish_intake: PublishIntake, clinician_headers, clock: FakeClock
) -> None:
    body = _by_id("P01", clock.now().date())
    intake_id = await publish_intake(body)
    [referral] = await eventually(lambda i=intake_id: referrals_for(referral_client, clinician_headers, i))
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
    [referral] = await eventually(lambda i=intake_id: referrals_for(referral_client, clinician_headers, i))
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
    [referral] = await eventually(lambda i=intake_id: referrals_for(referral_client, clinician_headers, i))
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
    await eventually(lambda: referrals_for(referral_client, clinician_headers, intake_id))
    # Owe the event to the consumer again, as a lost ack or an expired lease would.
    event_id = await query_value(
        engine, "SELECT id FROM queue.events WHERE subject = :s AND type = 'intake.submitted'", s=intake_id
    )
    async with engine.begin() as conn:
        await redeliver(conn, "referral.triage", event_id)

    async def redelivered() -> bool:
        owed = await query_value(
            engine,
            "SELECT count(*) FROM queue.deliveries WHERE event_id = :e AND consumer = 'referral.triage'",
            e=event_id,
        )
        return owed == 0

    await eventually(redelivered)
    assert len(await referrals_for(referral_client, clinician_headers, intake_id)) == 1


async def test_amendment_with_same_outcome_updates_reasons_in_place(desk: Desk) -> None:
    body, intake_id, first = await desk.triaged("P12")
    body["conditions"] = ["spinal_stenosis", "osteoporosis"]
    [same] = await desk.amend(body, intake_id, 2)
    assert same["id"] == first["id"]
    assert same["destination"] == "pain_management"
    assert "intake amended" in same["history"][-1]["note"]


async def test_amendment_with_new_outcome_supersedes_the_open_referral(desk: Desk) -> None:
    body, intake_id, old = await desk.triaged("P12")
    body["red_flags"]["saddle_numbness"] = "yes"
    await desk.publish_intake(body, intake_id=intake_id, version=2, amended=True)

    async def two() -> list:
        items = await referrals_for(desk.client, desk.team.clinician, intake_id)
        return items if len(items) == 2 else []

    items = await eventually(two)
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


async def test_intakes_arriving_together_are_triaged_as_one_by_one(
    referral_client: AsyncClient, publish_intake: PublishIntake, clinician_headers, clock: FakeClock,
    engine: AsyncEngine,
) -> None:  # fmt: skip
    """Intake events committed together are claimed and triaged as one batch: each new intake
    gets its referral, history and `referral.created` event; a version already triaged changes
    nothing; an intake submitted and amended in the same batch ends as if handled in order."""
    import msgspec
    from sqlalchemy.ext.asyncio import AsyncSession

    from services.common.contracts.events import IntakeAmended, IntakeSubmitted
    from services.common.contracts.intake_body import IntakeBody
    from services.common.queue import publish

    today = clock.now().date()
    seen_before = await publish_intake(_by_id("P01", today))
    await eventually(lambda: referrals_for(referral_client, clinician_headers, seen_before))

    def event(
        vignette: str, intake_id: uuid.UUID, version: int = 1, amended: bool = False
    ) -> IntakeSubmitted:
        kind = IntakeAmended if amended else IntakeSubmitted
        body = msgspec.convert(_by_id(vignette, today), IntakeBody)
        return kind(intake_id=intake_id, patient_id=uuid.uuid4(), intake_version=version,
                    submitted_at=clock.now(), intake=body)  # fmt: skip

    new = [uuid.uuid4() for _ in range(3)]
    twice = uuid.uuid4()
    events = [
        event("P01", new[0]),
        event("P24", new[1]),
        event("P01", seen_before),  # redelivered by its publisher: already triaged
        event("P24", twice),
        event("P01", twice, version=2, amended=True),
        event("P24", new[2]),
    ]
    async with AsyncSession(engine) as session:
        for payload in events:
            await publish(session, payload, subject=payload.intake_id)
        await session.commit()

    expected = {new[0]: "urgent_care", new[1]: "clinician_review", new[2]: "clinician_review"}
    for intake_id, destination in expected.items():
        [referral] = await eventually(
            lambda i=intake_id: referrals_for(referral_client, clinician_headers, i)
        )
        assert (referral["destination"], referral["intake_version"]) == (destination, 1)
        assert [(h["status"], h["by"]) for h in referral["history"]] == [(referral["status"], "triage")]
    both = await eventually(lambda: _two(referral_client, clinician_headers, twice))
    assert sorted((r["intake_version"], r["destination"]) for r in both) == [
        (1, "clinician_review"), (2, "urgent_care")
    ]  # fmt: skip
    assert len(await referrals_for(referral_client, clinician_headers, seen_before)) == 1
    async with engine.connect() as conn:
        announced = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM queue.events WHERE type = 'referral.created' "
                    "AND CAST(payload->>'intake_id' AS uuid) = ANY(:ids)"
                ),
                {"ids": [*new, seen_before]},
            )
        ).scalar_one()
    assert announced == 4


async def _two(client: AsyncClient, headers: dict, intake_id: uuid.UUID) -> list[dict] | None:
    found = await referrals_for(client, headers, intake_id)
    return found if len(found) == 2 else None
