"""Re-triage on amendment, beyond test_triage_consumer: the work already done on a referral
survives an amendment with the same outcome, a different outcome is announced to subscribers,
and a version that arrives after a newer one changes nothing."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.clock import FakeClock
from tests.conftest import MakeKey
from tests.referral.conftest import PublishIntake, referrals_for, wait_for
from tests.referral.support import Team, act, events_about, make_team, vignette_body


@pytest.fixture
async def team(make_key: MakeKey) -> Team:
    return await make_team(make_key)


async def test_same_outcome_amendment_keeps_an_accepted_referral_accepted(
    referral_client: httpx.AsyncClient, publish_intake: PublishIntake, team: Team, clock: FakeClock
) -> None:
    body = vignette_body("P12", clock.now().date())
    intake_id = await publish_intake(body)
    [referral] = await wait_for(lambda: referrals_for(referral_client, team.clinician, intake_id))
    clock.advance(dt.timedelta(hours=1))
    assert (
        await act(referral_client, referral["id"], "accept", team.specialist["pain_management"])
    ).status_code == 200

    clock.advance(dt.timedelta(hours=1))
    body["symptoms"] = ["muscle_spasms"]
    await publish_intake(body, intake_id=intake_id, version=2, amended=True)

    async def amended() -> list:
        items = await referrals_for(referral_client, team.clinician, intake_id)
        return items if items and items[0]["intake_version"] == 2 else []

    [same] = await wait_for(amended)
    assert same["id"] == referral["id"]
    assert same["status"] == "accepted"
    assert [h["status"] for h in same["history"]] == ["requested", "accepted", "accepted"]
    assert same["history"][-1]["by"] == "triage"


async def test_different_outcome_amendment_announces_the_supersession(
    referral_client: httpx.AsyncClient,
    publish_intake: PublishIntake,
    team: Team,
    clock: FakeClock,
    engine: AsyncEngine,
) -> None:
    body = vignette_body("P12", clock.now().date())
    intake_id = await publish_intake(body)
    [old] = await wait_for(lambda: referrals_for(referral_client, team.clinician, intake_id))
    clock.advance(dt.timedelta(hours=1))
    body["red_flags"]["limb_weakness"] = "yes"
    await publish_intake(body, intake_id=intake_id, version=2, amended=True)

    async def two() -> list:
        items = await referrals_for(referral_client, team.clinician, intake_id)
        return items if len(items) == 2 else []

    new = next(r for r in await wait_for(two) if r["id"] != old["id"])
    assert (new["destination"], new["priority"], new["supersedes"]) == ("urgent_care", "urgent", old["id"])
    [cancelled] = await events_about(engine, old["id"], "referral.status_changed")
    assert (cancelled["status"], cancelled["previous_status"], cancelled["superseded_by"]) == (
        "cancelled", "requested", new["id"],
    )  # fmt: skip
    [created] = await events_about(engine, new["id"], "referral.created")
    assert created["supersedes"] == old["id"] and created["intake_version"] == 2


async def test_a_version_arriving_after_a_newer_one_changes_nothing(
    referral_client: httpx.AsyncClient,
    publish_intake: PublishIntake,
    team: Team,
    clock: FakeClock,
    engine: AsyncEngine,
) -> None:
    first = vignette_body("P12", clock.now().date())
    second = vignette_body("P01", clock.now().date())
    intake_id = await publish_intake(second, version=2, amended=True)
    [referral] = await wait_for(lambda: referrals_for(referral_client, team.clinician, intake_id))
    assert referral["intake_version"] == 2 and referral["destination"] == "urgent_care"

    await publish_intake(first, intake_id=intake_id, version=1)

    async def handled() -> bool:
        async with engine.connect() as conn:
            waiting = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM queue.deliveries d JOIN queue.events e ON e.id = d.event_id "
                        "WHERE e.subject = :s AND d.consumer = 'referral.triage'"
                    ),
                    {"s": intake_id},
                )
            ).scalar_one()
        return waiting == 0

    await wait_for(handled)
    assert await referrals_for(referral_client, team.clinician, intake_id) == [referral]
