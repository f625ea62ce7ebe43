"""The clinical picture behind a referral: what the intake said (complaint, red flags, history,
notes, contact details) kept by the referral service, shown to its destination, clinicians and
admins, updated on amendment, and never to the front desk or in lists."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from services.common.clock import FakeClock
from tests.conftest import eventually
from tests.referral.support import PublishIntake, Team, act, referrals_for, vignette_body


async def _referral_of(
    client: httpx.AsyncClient, publish_intake: PublishIntake, team: Team, body: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    intake_id = await publish_intake(body)
    [referral] = await eventually(lambda: referrals_for(client, team.clinician, intake_id))
    return intake_id, referral


def _picture_of(body: dict[str, Any]) -> dict[str, Any]:
    """What the picture should say, straight from the intake body."""
    p = body["patient"]
    return {
        "contact": {"sex": p.get("sex", "unknown"), "phone": p.get("phone"), "email": p.get("email")},
        "complaint": body["complaint"],
        "red_flags": body["red_flags"],
        "symptoms": body.get("symptoms", []),
        "conditions": body.get("conditions", []),
        "risk_factors": body.get("risk_factors", []),
        "treatments_tried": body.get("treatments_tried", []),
        "regenerative_procedure": body.get("regenerative_procedure"),
        "notes": body.get("notes"),
    }


def _normal(picture: dict[str, Any]) -> dict[str, Any]:
    """The API leaves out unset optional fields inside the complaint and treatments."""
    complaint = {k: v for k, v in picture["complaint"].items() if v is not None}
    complaint.setdefault("radiates_to", [])
    treatments = [{k: v for k, v in t.items() if v is not None} for t in picture["treatments_tried"]]
    return {**picture, "complaint": complaint, "treatments_tried": treatments}


async def test_its_destination_and_clinicians_see_the_intakes_clinical_answers(
    referral_client: httpx.AsyncClient, publish_intake: PublishIntake, team: Team, clock: FakeClock
) -> None:
    body = vignette_body("P12", clock.now().date())
    body["patient"] |= {"phone": "+1 555 0100", "email": "pat@example.org"}
    body["notes"] = "Prefers morning appointments."
    _, referral = await _referral_of(referral_client, publish_intake, team, body)
    assert referral["destination"] == "pain_management"
    expected = _normal(_picture_of(body))
    for headers in (team.specialist["pain_management"], team.clinician, team.admin):
        got = (await referral_client.get(f"/v1/referrals/{referral['id']}", headers=headers)).json()
        assert _normal(got["clinical"]) == expected
    assert got["clinical"]["contact"]["phone"] == "+1 555 0100"
    assert got["clinical"]["notes"] == "Prefers morning appointments."


async def test_the_front_desk_lists_and_other_destinations_do_not_get_it(
    referral_client: httpx.AsyncClient, publish_intake: PublishIntake, team: Team, clock: FakeClock
) -> None:
    body = vignette_body("P12", clock.now().date())
    body["notes"] = "private note"
    intake_id, referral = await _referral_of(referral_client, publish_intake, team, body)
    front = await referral_client.get(f"/v1/referrals/{referral['id']}", headers=team.front_desk)
    assert front.status_code == 200 and front.json().get("clinical") is None
    other = await referral_client.get(
        f"/v1/referrals/{referral['id']}", headers=team.specialist["regenerative_medicine"]
    )
    assert other.status_code == 404 and "private note" not in other.text
    listed = await referrals_for(referral_client, team.specialist["pain_management"], intake_id)
    assert listed[0].get("clinical") is None


async def test_an_amendment_brings_the_picture_up_to_date(
    referral_client: httpx.AsyncClient, publish_intake: PublishIntake, team: Team, clock: FakeClock
) -> None:
    body = vignette_body("P12", clock.now().date())
    intake_id, referral = await _referral_of(referral_client, publish_intake, team, body)
    clock.advance(dt.timedelta(hours=1))
    body["symptoms"] = ["muscle_spasms"]
    body["notes"] = "Spasms since Tuesday."
    await publish_intake(body, intake_id=intake_id, version=2, amended=True)

    async def amended() -> dict[str, Any] | None:
        got = (await referral_client.get(f"/v1/referrals/{referral['id']}", headers=team.clinician)).json()
        return got if got["intake_version"] == 2 else None

    got = await eventually(amended)
    assert got["clinical"]["symptoms"] == ["muscle_spasms"]
    assert got["clinical"]["notes"] == "Spasms since Tuesday."


async def test_a_redirected_referral_carries_the_picture_to_its_new_destination(
    referral_client: httpx.AsyncClient, publish_intake: PublishIntake, team: Team, clock: FakeClock
) -> None:
    body = vignette_body("P12", clock.now().date())
    _, referral = await _referral_of(referral_client, publish_intake, team, body)
    declined = await act(
        referral_client,
        referral["id"],
        "decline",
        team.specialist["pain_management"],
        {"reason": "better seen elsewhere", "redirect_to": "regenerative_medicine"},
    )
    successor = declined.json()["superseded_by"]
    got = await referral_client.get(
        f"/v1/referrals/{successor}", headers=team.specialist["regenerative_medicine"]
    )
    assert _normal(got.json()["clinical"]) == _normal(_picture_of(body))
