"""Minimum necessary: front desk sees where a referral went, how urgent, its status and due date;
not triage reasons, specialists' notes or a close reason."""

from __future__ import annotations

import httpx

from services.common.clock import FakeClock
from tests.referral.support import PublishIntake, Team, act, new_referral


async def test_front_desk_sees_a_referral_without_clinical_notes(
    referral_client: httpx.AsyncClient, publish_intake: PublishIntake, team: Team, clock: FakeClock
) -> None:
    referral = await new_referral(referral_client, publish_intake, team, clock, destination="pain_management")
    specialist = team.specialist["pain_management"]
    accepted = await act(
        referral_client, referral["id"], "accept", specialist, {"note": "MRI shows disc extrusion at L4-5"}
    )
    assert accepted.status_code == 200, accepted.text
    cancelled = await act(
        referral_client, referral["id"], "cancel", specialist, {"reason": "not a case here"}
    )
    assert cancelled.status_code == 200, cancelled.text
    url = f"/v1/referrals/{referral['id']}"
    clinical = (await referral_client.get(url, headers=team.clinician)).json()
    desk = (await referral_client.get(url, headers=team.front_desk)).json()
    assert "disc extrusion" in str(clinical["history"]) and clinical["reasons"]
    assert "disc extrusion" not in str(desk) and "not a case here" not in str(desk)
    assert desk["reasons"] == [] and all(h["note"] is None for h in desk["history"])
    for field in ("destination", "priority", "status", "due_by", "id"):
        assert desk[field] == clinical[field]
    listed = (
        await referral_client.get(
            "/v1/referrals", params={"intake_id": referral["intake_id"]}, headers=team.front_desk
        )
    ).json()
    assert "disc extrusion" not in str(listed) and listed["items"][0]["status"] == "cancelled"
