"""Re-triage on amendment, beyond test_triage_consumer: the work already done on a referral
survives an amendment with the same outcome, a different outcome is announced to subscribers,
a version that arrives after a newer one changes nothing, and each row of the amendment policy
(escalations supersede at once; anything else is an AMEND-HOLD a clinician resolves or cancels)."""

from __future__ import annotations

import datetime as dt
import uuid

from services.common.contracts.events import ReferralAmended
from services.referral.webhooks.consumer import thin_data
from tests.conftest import eventually, query_value
from tests.referral.support import Desk, act, events_about, referrals_for, vignette_body


async def test_same_outcome_amendment_keeps_an_accepted_referral_accepted(desk: Desk) -> None:
    body, intake_id, referral = await desk.triaged("P12")
    desk.clock.advance(dt.timedelta(hours=1))
    assert (
        await act(desk.client, referral["id"], "accept", desk.team.specialist["pain_management"])
    ).status_code == 200

    desk.clock.advance(dt.timedelta(hours=1))
    body["symptoms"] = ["muscle_spasms"]
    [same] = await desk.amend(body, intake_id, 2)
    assert same["id"] == referral["id"]
    assert same["status"] == "accepted"
    assert [h["status"] for h in same["history"]] == ["requested", "accepted", "accepted"]
    assert same["history"][-1]["by"] == "triage"


async def test_different_outcome_amendment_announces_the_supersession(desk: Desk) -> None:
    body, intake_id, old = await desk.triaged("P12")
    desk.clock.advance(dt.timedelta(hours=1))
    body["red_flags"]["limb_weakness"] = "yes"
    await desk.publish_intake(body, intake_id=intake_id, version=2, amended=True)

    async def two() -> list:
        items = await referrals_for(desk.client, desk.team.clinician, intake_id)
        return items if len(items) == 2 else []

    new = next(r for r in await eventually(two) if r["id"] != old["id"])
    assert (new["destination"], new["priority"], new["supersedes"]) == ("urgent_care", "urgent", old["id"])
    [cancelled] = await desk.status_changes(old["id"])
    assert (cancelled["status"], cancelled["previous_status"], cancelled["superseded_by"]) == (
        "cancelled", "requested", new["id"],
    )  # fmt: skip
    [created] = await events_about(desk.engine, new["id"], "referral.created")
    assert created["supersedes"] == old["id"] and created["intake_version"] == 2


async def test_a_version_arriving_after_a_newer_one_changes_nothing(desk: Desk) -> None:
    first = vignette_body("P12", desk.clock.now().date())
    second = vignette_body("P01", desk.clock.now().date())
    intake_id = await desk.publish_intake(second, version=2, amended=True)
    [referral] = await eventually(lambda: referrals_for(desk.client, desk.team.clinician, intake_id))
    assert referral["intake_version"] == 2 and referral["destination"] == "urgent_care"

    await desk.publish_intake(first, intake_id=intake_id, version=1)

    async def handled() -> bool:
        waiting = await query_value(
            desk.engine,
            "SELECT count(*) FROM queue.deliveries d JOIN queue.events e ON e.id = d.event_id "
            "WHERE e.subject = :s AND d.consumer = 'referral.triage'",
            s=intake_id,
        )
        return waiting == 0

    await eventually(handled)
    assert await referrals_for(desk.client, desk.team.clinician, intake_id) == [referral]


# -- the amendment policy of ruleset v2, row by row -------------------------------------------


async def _resolved_to_routine(desk: Desk) -> tuple[dict, uuid.UUID, dict, dict]:
    """An intake held for a clinician (unsure about weight loss), resolved to routine pain
    management: its body, id, the referral as triaged and as resolved."""
    body, intake_id, held = await desk.triaged("P24")
    resolve = {"destination": "pain_management", "priority": "routine", "note": "weight stable on the scales"}
    resolved = await act(desk.client, held["id"], "resolve", desk.team.clinician, resolve)
    assert resolved.status_code == 200, resolved.text
    return body, intake_id, held, resolved.json()


def _one(items: list[dict], **match: object) -> dict:
    [found] = [r for r in items if all(r[k] == v for k, v in match.items())]
    return found


async def test_an_amendment_with_no_open_referral_creates_one(desk: Desk) -> None:
    body, intake_id, old = await desk.triaged("P12")
    cancel = await act(
        desk.client, old["id"], "cancel", desk.team.clinician, {"reason": "patient moved away"}
    )
    assert cancel.status_code == 200
    body["red_flags"]["fever_or_chills"] = "yes"
    items = await desk.amend(body, intake_id, 2)
    new = _one(items, intake_version=2)
    assert (new["destination"], new["priority"], new["status"]) == ("urgent_care", "urgent", "requested")
    assert new["supersedes"] is None
    assert _one(items, id=old["id"])["status"] == "cancelled"


async def test_a_same_outcome_amendment_keeps_a_clinicians_resolve_and_says_so(desk: Desk) -> None:
    body, intake_id, held, _ = await _resolved_to_routine(desk)
    body["red_flags"]["unexplained_weight_loss"] = "no"  # the form now agrees with the clinician
    items = await desk.amend(body, intake_id, 2)
    [same] = items
    assert same["id"] == held["id"] and same["status"] == "requested"
    assert [r["code"] for r in same["reasons"]] == ["DEFAULT", "CLINICIAN"]
    assert "weight stable" in same["reasons"][-1]["text"]
    [amended] = await events_about(desk.engine, held["id"], "referral.amended")
    assert (amended["action"], amended["intake_version"]) == ("updated", 2)


async def test_a_more_urgent_amendment_supersedes_at_once_and_says_so(desk: Desk) -> None:
    body, intake_id, old = await desk.triaged("P12")
    body["red_flags"]["bladder_or_bowel_dysfunction"] = "unsure"
    items = await desk.amend(body, intake_id, 2)
    new = _one(items, intake_version=2)
    assert (new["destination"], new["priority"], new["supersedes"]) == ("urgent_care", "stat", old["id"])
    [amended] = await events_about(desk.engine, old["id"], "referral.amended")
    assert (amended["action"], amended["superseded_by"], amended["after_resolve"]) == (
        "superseded", new["id"], False,
    )  # fmt: skip
    assert (amended["proposed_destination"], amended["proposed_priority"]) == ("urgent_care", "stat")


async def test_urgent_care_after_a_resolve_supersedes_names_the_resolve_and_tells_the_clinician(
    desk: Desk,
) -> None:
    body, intake_id, held, _ = await _resolved_to_routine(desk)
    body["red_flags"]["unexplained_weight_loss"] = "yes"
    items = await desk.amend(body, intake_id, 2)
    new = _one(items, intake_version=2)
    assert (new["destination"], new["priority"], new["supersedes"]) == ("urgent_care", "urgent", held["id"])
    assert [r["code"] for r in new["reasons"]] == ["WEIGHT", "CLINICIAN"]
    assert "supersedes the resolve by " + desk.team.name["clinician"] in new["history"][0]["note"]
    old = _one(items, id=held["id"])
    assert (old["status"], old["superseded_by"]) == ("cancelled", new["id"])
    [amended] = await events_about(desk.engine, held["id"], "referral.amended")
    assert (amended["action"], amended["resolved_by"], amended["after_resolve"]) == (
        "superseded", desk.team.name["clinician"], True,
    )  # fmt: skip


async def test_a_less_urgent_amendment_is_held_and_the_accepted_referral_stays(desk: Desk) -> None:
    body, intake_id, open_ = await desk.triaged("P20")  # fever: urgent care within 24 h
    accepted = await act(desk.client, open_["id"], "accept", desk.team.specialist["urgent_care"])
    assert accepted.status_code == 200
    body["red_flags"]["fever_or_chills"] = "no"  # by itself, this would be routine pain management
    items = await desk.amend(body, intake_id, 2)
    assert _one(items, id=open_["id"]) == accepted.json(), "the open referral stays, unchanged"
    hold = _one(items, intake_version=2)
    assert (hold["destination"], hold["priority"], hold["status"]) == (
        "clinician_review",
        "urgent",
        "needs_review",
    )
    assert hold["amendment_of"] == open_["id"] and hold["supersedes"] is None
    assert [r["code"] for r in hold["reasons"]] == ["AMEND-HOLD", "DEFAULT"]
    assert hold["reasons"][0]["text"].startswith("Your updated form would change your referral; it stays")
    [amended] = await events_about(desk.engine, open_["id"], "referral.amended")
    assert (amended["action"], amended["hold_id"], amended["proposed_priority"]) == (
        "held",
        hold["id"],
        "routine",
    )
    [created] = await events_about(desk.engine, hold["id"], "referral.created")
    assert created["reason_codes"][0] == "AMEND-HOLD"

    # The clinician replaces the open referral: the resolved hold supersedes it.
    desk.clock.advance(dt.timedelta(minutes=5))
    resolve = {"destination": "pain_management", "priority": "routine", "note": "no fever since Monday"}
    resolved = await act(desk.client, hold["id"], "resolve", desk.team.clinician, resolve)
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["status"], resolved.json()["supersedes"]) == ("requested", open_["id"])
    replaced = _one(await referrals_for(desk.client, desk.team.clinician, intake_id), id=open_["id"])
    assert (replaced["status"], replaced["superseded_by"]) == ("cancelled", hold["id"])
    assert replaced["history"][-1]["by"] == desk.team.name["clinician"]


async def test_an_as_urgent_amendment_elsewhere_is_held_and_cancelling_the_hold_keeps_the_referral(
    desk: Desk,
) -> None:
    body, intake_id, open_ = await desk.triaged("P05")  # regenerative medicine, routine
    body["treatments_tried"] = []  # pain management, routine: as urgent, elsewhere
    items = await desk.amend(body, intake_id, 2)
    hold = _one(items, intake_version=2)
    assert (hold["destination"], hold["priority"]) == ("clinician_review", "routine")
    assert [r["code"] for r in hold["reasons"]] == ["AMEND-HOLD", "REGEN-CONSERVATIVE-FIRST"]
    kept = await act(
        desk.client, hold["id"], "cancel", desk.team.clinician, {"reason": "trial was done elsewhere"}
    )
    assert kept.status_code == 200
    still = _one(await referrals_for(desk.client, desk.team.clinician, intake_id), id=open_["id"])
    assert (still["status"], still["destination"], still["superseded_by"]) == (
        "requested", "regenerative_medicine", None,
    )  # fmt: skip


async def test_a_more_urgent_hold_after_a_resolve_is_held_not_applied(desk: Desk) -> None:
    body, intake_id, held, resolved = await _resolved_to_routine(desk)
    body["red_flags"]["unexplained_weight_loss"] = "no"
    body["risk_factors"] = ["recent_trauma"]  # TRAUMA: a clinician's hold, more urgent than routine
    items = await desk.amend(body, intake_id, 2)
    assert _one(items, id=held["id"]) == resolved, "the clinician's resolve is not overwritten"
    hold = _one(items, intake_version=2)
    assert (hold["destination"], hold["priority"], hold["amendment_of"]) == (
        "clinician_review", "urgent", held["id"],
    )  # fmt: skip
    assert [r["code"] for r in hold["reasons"]] == ["AMEND-HOLD", "TRAUMA", "CLINICIAN"]


async def test_an_amendment_of_an_open_hold_puts_amend_hold_on_the_hold_itself(desk: Desk) -> None:
    body, intake_id, held = await desk.triaged("P24")  # clinician review, urgent
    body["red_flags"]["unexplained_weight_loss"] = "no"  # would be routine pain management
    [same] = await desk.amend(body, intake_id, 2)
    assert (same["id"], same["status"], same["destination"], same["priority"]) == (
        held["id"], "needs_review", "clinician_review", "urgent",
    )  # fmt: skip
    assert [r["code"] for r in same["reasons"]] == ["AMEND-HOLD", "DEFAULT"]
    assert same["due_by"] == held["due_by"]


def test_the_amended_event_leaves_the_clinic_without_reasons_or_names() -> None:
    payload = ReferralAmended(
        referral_id=uuid.uuid4(),
        intake_id=uuid.uuid4(),
        intake_version=2,
        action="superseded",
        destination="pain_management",
        priority="routine",
        proposed_destination="urgent_care",
        proposed_priority="urgent",
        reason_codes=["WEIGHT"],
        amended_at=dt.datetime.now(dt.UTC),
        resolved_by="Dr Who",
        after_resolve=True,
    )
    thin = thin_data(payload)
    assert thin is not None
    data, destination = thin
    assert destination == "pain_management"
    assert "reason_codes" not in data and "resolved_by" not in data
    assert data["after_resolve"] is True and data["action"] == "superseded"
