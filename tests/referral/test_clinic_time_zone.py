"""The clinic's date (`CLINIC_TIME_ZONE`): intake validation, triage and follow-ups count from the
clinic's today, east and west of UTC; triage counts from when the intake version was submitted,
so a dead-letter replay days later routes the same.

Each case pins the clock where the clinic's date and the UTC date differ: 11:00 UTC is already
tomorrow on Kiritimati (UTC+14); 03:00 UTC is still yesterday in Los Angeles."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.clock import FakeClock, clinic_today
from services.common.contracts.intake_body import decode_intake
from services.common.settings import Settings
from services.intake.app import create_app as create_intake_app
from services.referral.app import create_app as create_referral_app
from services.referral.triage import triage
from services.vignettes import load_vignettes
from tests.conftest import MakeKey, auth, eventually, serve
from tests.referral.support import make_team, referral_in, referrals_for

UTC_TODAY = dt.datetime.now(dt.UTC).date()
EAST = ("Pacific/Kiritimati", dt.datetime.combine(UTC_TODAY, dt.time(11), dt.UTC), 1)
WEST = ("America/Los_Angeles", dt.datetime.combine(UTC_TODAY, dt.time(3), dt.UTC), -1)


@asynccontextmanager
async def clinic(
    settings: Settings, engine: AsyncEngine, zone: str, clock: FakeClock, *, intake: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """One service of a clinic in `zone`, on `clock` (the referral service with its workers)."""
    zoned = dataclasses.replace(settings, clinic_time_zone=zone)
    app = (
        create_intake_app(zoned, engine, clock=clock)
        if intake
        else create_referral_app(zoned, engine, run_workers=True, clock=clock)
    )
    async with serve(app) as client:
        yield client


def post_spinal_form(clinic_day: dt.date, days_before: int) -> dict[str, Any]:
    """New numbness `days_before` the clinic's day after a procedure: POST-SPINAL (stat) within
    14 days, NEURO (urgent) after."""
    body = next(v for v in load_vignettes(clinic_day) if v.id == "P17").body
    body["patient"]["mrn"] = f"TZ-{uuid.uuid4().hex[:8]}"
    body["regenerative_procedure"]["performed_on"] = (clinic_day - dt.timedelta(days=days_before)).isoformat()
    return body


def test_the_pinned_instants_fall_on_another_date_in_the_clinic() -> None:
    for zone, at, offset in (EAST, WEST):
        assert clinic_today(at, zone) == at.date() + dt.timedelta(days=offset)


@pytest.mark.parametrize(
    ("where", "days_before", "expected"),
    [
        # Kiritimati: 15 days by the clinic's date (14 by UTC's): past the early window.
        (EAST, 15, ("urgent_care", "urgent", "NEURO")),
        # Los Angeles: 14 days by the clinic's date (15 by UTC's): still early.
        (WEST, 14, ("urgent_care", "stat", "POST-SPINAL")),
    ],
    ids=["east", "west"],
)
async def test_an_intake_is_validated_and_triaged_by_the_clinics_date(
    settings: Settings,
    engine: AsyncEngine,
    make_key: MakeKey,
    where: tuple[str, dt.datetime, int],
    days_before: int,
    expected: tuple[str, str, str],
) -> None:
    zone, at, _ = where
    clock = FakeClock(at)
    day = clinic_today(at, zone)
    front_desk, clinician = auth(await make_key("front_desk")), auth(await make_key("clinician"))
    async with (
        clinic(settings, engine, zone, clock, intake=True) as intake,
        clinic(settings, engine, zone, clock) as referral,
    ):
        body = post_spinal_form(day, days_before)
        created = await intake.post("/v1/intakes", json=body, headers=front_desk)
        assert created.status_code == 201, created.text
        [found] = await eventually(lambda: referrals_for(referral, clinician, created.json()["id"]))
        assert (found["destination"], found["priority"], found["reasons"][0]["code"]) == expected

        # A form dated the clinic's tomorrow is accepted (and counts as today); the day after is not.
        for ahead, status in ((1, 201), (2, 422)):
            late = post_spinal_form(day, -ahead)
            response = await intake.post("/v1/intakes", json=late, headers=front_desk)
            assert response.status_code == status, response.text
        assert [e["field"] for e in response.json()["errors"]] == ["regenerative_procedure.performed_on"]
        preview = await referral.post("/v1/triage/preview", json=post_spinal_form(day, -1), headers=clinician)
        assert preview.json()["reasons"][0]["code"] == "POST-SPINAL", (
            "a procedure dated tomorrow is 0 days old"
        )


async def test_a_dead_letter_replayed_days_later_is_triaged_as_of_its_submission(
    settings: Settings, engine: AsyncEngine, make_key: MakeKey
) -> None:
    zone, at, _ = WEST
    day = clinic_today(at, zone)
    body = post_spinal_form(day, 14)
    async with clinic(settings, engine, zone, FakeClock(at), intake=True) as intake:
        created = await intake.post("/v1/intakes", json=body, headers=auth(await make_key("front_desk")))
        assert created.status_code == 201, created.text
    intake_id = created.json()["id"]
    # The referral service was down that day: the delivery's attempts ran out.
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE queue.deliveries d SET status = 'dead', attempts = 8, last_error = 'database down' "
                "FROM queue.events e WHERE e.id = d.event_id AND e.subject = CAST(:s AS uuid) "
                "AND d.consumer = 'referral.triage'"
            ),
            {"s": intake_id},
        )
    later = at + dt.timedelta(days=10)
    later_verdict = triage(decode_intake(json.dumps(body).encode()), clinic_today(later, zone))
    assert later_verdict.reasons[0].code == "NEURO", "triaged as of the replay day, it would not be stat"

    admin, clinician = auth(await make_key("admin")), auth(await make_key("clinician"))
    async with clinic(settings, engine, zone, FakeClock(later)) as referral:
        dead = await referral.get("/v1/events/dead", params={"consumer": "referral.triage"}, headers=admin)
        [delivery] = [d for d in dead.json()["items"] if d["subject"] == intake_id]
        replayed = await referral.post(f"/v1/events/dead/{delivery['id']}/replay", headers=admin)
        assert replayed.status_code == 200, replayed.text
        [found] = await eventually(lambda: referrals_for(referral, clinician, intake_id))
    assert (found["destination"], found["priority"], found["reasons"][0]["code"]) == (
        "urgent_care",
        "stat",
        "POST-SPINAL",
    )


async def test_follow_ups_fall_on_the_clinics_dates(
    settings: Settings, engine: AsyncEngine, make_key: MakeKey
) -> None:
    zone, at, _ = EAST
    clock = FakeClock(at)
    team = await make_team(make_key)

    async def publish(body: dict[str, Any], **_: Any) -> uuid.UUID:
        created = await intake.post("/v1/intakes", json=body, headers=team.front_desk)
        assert created.status_code == 201, created.text
        return uuid.UUID(created.json()["id"])

    async with (
        clinic(settings, engine, zone, clock, intake=True) as intake,
        clinic(settings, engine, zone, clock) as referral,
    ):
        done = await referral_in(
            "completed", referral, publish, team, clock, destination="regenerative_medicine"
        )
    completed_on = clinic_today(clock.now(), zone)
    assert completed_on == clock.now().date() + dt.timedelta(days=1)
    assert [f["due_on"] for f in done["follow_ups"]] == [
        (completed_on + dt.timedelta(days=offset)).isoformat()
        for offset in sorted(settings.follow_up_offsets_days)
    ]
