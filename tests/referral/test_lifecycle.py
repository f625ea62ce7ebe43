"""The referral status machine through the HTTP actions: every allowed move (history, event, the
intake's mirror), every refused move (409 naming the allowed ones), scoping by role and
destination, worklists, and decline with a redirect."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.clock import FakeClock
from services.common.http.pagination import encode_cursor
from services.common.settings import Settings
from services.intake.app import create_app as create_intake_app
from tests.conftest import eventually, query_value, serve
from tests.intake.conftest import intake_form
from tests.referral.support import Desk, Team, act, body_for, events_about

ACTIONS = ("accept", "decline", "schedule", "complete", "no-show", "cancel", "resolve")
#: The machine of API.md, written out independently of the code under test.
ALLOWED = {
    "needs_review": {"resolve": "requested", "cancel": "cancelled"},
    "requested": {"accept": "accepted", "decline": "declined", "cancel": "cancelled"},
    "accepted": {"schedule": "scheduled", "cancel": "cancelled"},
    "scheduled": {"complete": "completed", "no-show": "no_show", "cancel": "cancelled"},
    "declined": {},
    "completed": {},
    "no_show": {},
    "cancelled": {},
}
ALLOWED_MOVES = [(status, action) for status, moves in ALLOWED.items() for action in moves]
REFUSED_MOVES = [(s, a) for s in ALLOWED for a in ACTIONS if a not in ALLOWED[s]]


async def _get(client: httpx.AsyncClient, referral_id: str, headers: dict[str, str]) -> dict[str, Any]:
    """The referral as the lists and the actions show it (its clinical picture, only in this
    answer, is tested in test_clinical_picture.py)."""
    response = await client.get(f"/v1/referrals/{referral_id}", headers=headers)
    assert response.status_code == 200, response.text
    return {**response.json(), "clinical": None}


def _expected_note(action: str, body: dict[str, Any] | None) -> str | None:
    if body is None:
        return None
    if action == "schedule":
        return f"appointment at {dt.datetime.fromisoformat(body['appointment_at']).isoformat()}"
    return body.get("reason") or body.get("note")


@pytest.mark.parametrize(("status", "action"), ALLOWED_MOVES)
async def test_allowed_move_records_history_and_emits_status_changed(
    status: str, action: str, desk: Desk
) -> None:
    referral = await desk.referral_in(status)
    events_before = await desk.status_changes(referral["id"])
    desk.clock.advance(dt.timedelta(minutes=7))
    body = body_for(action, desk.clock) or {"note": f"{action} noted"}
    actor = "clinician" if referral["destination"] == "clinician_review" else referral["destination"]

    response = await act(
        desk.client, referral["id"], action, desk.team.for_destination(referral["destination"]), body
    )

    assert response.status_code == 200, response.text
    moved = response.json()
    target = ALLOWED[status][action]
    assert moved["status"] == target
    entry = moved["history"][-1]
    assert (entry["status"], entry["by"], entry["note"]) == (
        target,
        desk.team.name[actor],
        _expected_note(action, body),
    )
    assert dt.datetime.fromisoformat(entry["at"]) == desk.clock.now()
    assert len(moved["history"]) == len(referral["history"]) + 1
    assert sorted(moved["allowed_actions"]) == sorted(ALLOWED[target])
    assert await _get(desk.client, referral["id"], desk.team.clinician) == moved
    events = await desk.status_changes(referral["id"])
    assert len(events) == len(events_before) + 1
    event = events[-1]
    assert (event["status"], event["previous_status"], event["changed_by"]) == (
        target,
        status,
        desk.team.name[actor],
    )
    assert dt.datetime.fromisoformat(event["changed_at"]) == desk.clock.now()
    assert event["referral_id"] == referral["id"] and event["intake_id"] == referral["intake_id"]


@pytest.mark.parametrize("status", list(ALLOWED))
async def test_refused_moves_are_409_naming_the_allowed_ones_and_change_nothing(
    status: str, desk: Desk
) -> None:
    referral = await desk.referral_in(status)
    events_before = await desk.status_changes(referral["id"])
    refused = [a for s, a in REFUSED_MOVES if s == status]
    assert refused

    for action in refused:
        response = await act(
            desk.client, referral["id"], action, desk.team.clinician, body_for(action, desk.clock)
        )
        assert response.status_code == 409, (action, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == 409 and problem["current_status"] == status
        assert sorted(problem["allowed_actions"]) == sorted(ALLOWED[status])
        assert action in problem["detail"] and status in problem["detail"]

    assert await _get(desk.client, referral["id"], desk.team.clinician) == referral
    assert await desk.status_changes(referral["id"]) == events_before


async def test_the_second_of_two_concurrent_accepts_is_refused(desk: Desk) -> None:
    referral = await desk.new_referral()
    headers = desk.team.specialist["pain_management"]
    first, second = await asyncio.gather(
        act(desk.client, referral["id"], "accept", headers),
        act(desk.client, referral["id"], "accept", desk.team.clinician),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    history = (await _get(desk.client, referral["id"], desk.team.clinician))["history"]
    assert [h["status"] for h in history] == ["requested", "accepted"]


# -- scoping ---------------------------------------------------------------------------------


async def test_a_specialist_neither_sees_nor_moves_another_destinations_referral(desk: Desk) -> None:
    referral = await desk.new_referral(destination="pain_management")
    other = desk.team.specialist["urgent_care"]

    seen = await desk.client.get(f"/v1/referrals/{referral['id']}", headers=other)
    assert seen.status_code == 404
    assert "Test" not in seen.text and referral["patient"]["mrn"] not in seen.text
    for action in ("accept", "decline", "cancel"):
        moved = await act(desk.client, referral["id"], action, other, body_for(action, desk.clock))
        assert moved.status_code == 404, action
    listed = await desk.client.get(
        "/v1/referrals", params={"intake_id": referral["intake_id"]}, headers=other
    )
    assert listed.json()["items"] == []
    asked = await desk.client.get("/v1/referrals", params={"destination": "pain_management"}, headers=other)
    assert asked.status_code == 403
    own = await desk.client.get("/v1/referrals", params={"limit": 200}, headers=other)
    assert {r["destination"] for r in own.json()["items"]} <= {"urgent_care"}

    assert (await _get(desk.client, referral["id"], desk.team.clinician))["status"] == "requested"
    accepted = await act(desk.client, referral["id"], "accept", desk.team.specialist["pain_management"])
    assert accepted.status_code == 200


async def test_who_may_move_a_referral(desk: Desk) -> None:
    referral = await desk.new_referral(destination="pain_management")
    held = await desk.new_referral(destination="clinician_review")

    assert (
        await desk.client.get(f"/v1/referrals/{referral['id']}", headers=desk.team.front_desk)
    ).status_code == 200
    assert (await act(desk.client, referral["id"], "accept", desk.team.front_desk)).status_code == 403
    resolve = body_for("resolve", desk.clock)
    # A specialist never resolves a clinician review (nor sees one); a clinician or admin does.
    assert (
        await act(desk.client, held["id"], "resolve", desk.team.specialist["pain_management"], resolve)
    ).status_code == 403
    assert (
        await desk.client.get(f"/v1/referrals/{held['id']}", headers=desk.team.specialist["pain_management"])
    ).status_code == 404
    resolved = await act(desk.client, held["id"], "resolve", desk.team.admin, resolve)
    assert resolved.status_code == 200
    assert (resolved.json()["destination"], resolved.json()["status"]) == ("pain_management", "requested")
    # Now it is pain management's: its specialist sees it and may accept it.
    assert (
        await act(desk.client, held["id"], "accept", desk.team.specialist["pain_management"])
    ).status_code == 200
    assert (await desk.client.get("/v1/referrals")).status_code == 401


async def test_resolve_sets_destination_priority_and_a_fresh_due_by(desk: Desk) -> None:
    held = await desk.new_referral(destination="clinician_review")
    desk.clock.advance(dt.timedelta(hours=3))
    body = {"destination": "urgent_care", "priority": "urgent", "note": "bowel symptoms confirmed by phone"}

    resolved = (await act(desk.client, held["id"], "resolve", desk.team.clinician, body)).json()

    assert (resolved["destination"], resolved["priority"], resolved["status"]) == (
        "urgent_care",
        "urgent",
        "requested",
    )
    assert dt.datetime.fromisoformat(resolved["due_by"]) == desk.clock.now() + dt.timedelta(hours=24)
    assert resolved["reasons"][-1]["code"] == "CLINICIAN"
    assert "bowel symptoms confirmed by phone" in resolved["reasons"][-1]["text"]
    assert resolved["reasons"][0] == held["reasons"][0]


# -- bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "body", "field"),
    [
        ("decline", {}, "reason"),
        ("decline", {"reason": "   "}, "reason"),
        ("decline", {"reason": "no", "redirect_to": "elsewhere"}, "redirect_to"),
        ("cancel", {"reason": ""}, "reason"),
        ("schedule", {"appointment_at": "2026-12-01T10:00:00"}, "appointment_at"),
        ("schedule", {}, "appointment_at"),
    ],
)
async def test_a_bad_action_body_is_422_naming_the_field_and_moves_nothing(
    action: str, body: dict[str, Any], field: str, desk: Desk
) -> None:
    status = "accepted" if action == "schedule" else "requested"
    referral = await desk.referral_in(status)
    response = await act(desk.client, referral["id"], action, desk.team.clinician, body)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert await _get(desk.client, referral["id"], desk.team.clinician) == referral


# -- decline with a redirect -----------------------------------------------------------------


async def test_decline_with_redirect_creates_a_linked_referral_keeping_the_reason(desk: Desk) -> None:
    referral = await desk.new_referral(destination="pain_management")
    desk.clock.advance(dt.timedelta(hours=2))
    reason = "disc herniation after failed physio: stem-cell candidate"
    pain = desk.team.specialist["pain_management"]

    response = await act(
        desk.client,
        referral["id"],
        "decline",
        pain,
        {"reason": reason, "redirect_to": "regenerative_medicine"},
    )

    assert response.status_code == 200, response.text
    declined = response.json()
    assert declined["status"] == "declined" and declined["close_reason"] == reason
    successor_id = declined["superseded_by"]
    assert successor_id is not None
    assert reason in declined["history"][-1]["note"]
    # The new referral is regenerative medicine's: not shown to pain management.
    assert (await desk.client.get(f"/v1/referrals/{successor_id}", headers=pain)).status_code == 404
    successor = await _get(desk.client, successor_id, desk.team.specialist["regenerative_medicine"])
    assert successor["supersedes"] == referral["id"]
    assert (successor["destination"], successor["priority"], successor["status"]) == (
        "regenerative_medicine", referral["priority"], "requested",
    )  # fmt: skip
    assert successor["intake_id"] == referral["intake_id"]
    assert successor["reasons"][0]["code"] == "REDIRECT" and reason in successor["reasons"][0]["text"]
    assert successor["reasons"][1:] == referral["reasons"]
    assert successor["history"][0]["by"] == desk.team.name["pain_management"]
    assert dt.datetime.fromisoformat(successor["created_at"]) == desk.clock.now()
    assert dt.datetime.fromisoformat(successor["due_by"]) == desk.clock.now() + dt.timedelta(days=14)
    [declined_event] = await desk.status_changes(referral["id"])
    assert declined_event["status"] == "declined" and declined_event["superseded_by"] == successor_id
    [created_event] = await events_about(desk.engine, successor_id, "referral.created")
    assert created_event["supersedes"] == referral["id"]


async def test_redirect_to_the_same_destination_is_422(desk: Desk) -> None:
    referral = await desk.new_referral(destination="pain_management")
    body = {"reason": "wrong clinic", "redirect_to": "pain_management"}
    response = await act(desk.client, referral["id"], "decline", desk.team.clinician, body)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "redirect_to" and "pain_management" not in error["allowed"]
    assert await _get(desk.client, referral["id"], desk.team.clinician) == referral


# -- worklists -------------------------------------------------------------------------------


async def _all_pages(
    client: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any], limit: int = 50
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await client.get(
            "/v1/referrals",
            params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})},
            headers=headers,
        )
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def _rank(item: dict[str, Any]) -> tuple[int, dt.datetime, uuid.UUID]:
    order = {"stat": 0, "urgent": 1, "routine": 2}
    return order[item["priority"]], dt.datetime.fromisoformat(item["due_by"]), uuid.UUID(item["id"])


async def test_worklist_sorts_by_priority_then_due_by_and_filters(desk: Desk) -> None:
    created = []
    for vignette in ("P09", "P10", "P01"):  # urgent, urgent, stat: created a minute apart
        created.append(await desk.new_referral(destination="urgent_care", vignette=vignette))
        desk.clock.advance(dt.timedelta(minutes=1))
    urgent_a, urgent_b, stat = created
    mine = {r["id"] for r in created}
    headers = desk.team.specialist["urgent_care"]

    everything = await _all_pages(desk.client, headers, {}, limit=3)
    assert everything == sorted(everything, key=_rank)
    assert [r["id"] for r in everything if r["id"] in mine] == [stat["id"], urgent_a["id"], urgent_b["id"]]

    urgent_only = await _all_pages(desk.client, headers, {"priority": "urgent"})
    assert {r["priority"] for r in urgent_only} == {"urgent"}
    assert [r["id"] for r in urgent_only if r["id"] in mine] == [urgent_a["id"], urgent_b["id"]]

    await act(desk.client, urgent_b["id"], "accept", headers)
    accepted = await _all_pages(desk.client, headers, {"status": ["accepted", "scheduled"]})
    assert {r["status"] for r in accepted} <= {"accepted", "scheduled"}
    assert [r["id"] for r in accepted if r["id"] in mine] == [urgent_b["id"]]

    desk.clock.advance(dt.timedelta(hours=2))  # past the stat referral's hour, within the urgent ones' day
    overdue = await _all_pages(desk.client, headers, {"overdue": "true"})
    assert all(r["overdue"] for r in overdue)
    assert [r["id"] for r in overdue if r["id"] in mine] == [stat["id"]]
    on_time = await _all_pages(desk.client, headers, {"overdue": "false"})
    assert not any(r["overdue"] for r in on_time)
    assert [r["id"] for r in on_time if r["id"] in mine] == [urgent_a["id"], urgent_b["id"]]

    await act(desk.client, stat["id"], "cancel", headers, {"reason": "seen in the emergency department"})
    overdue = await _all_pages(desk.client, headers, {"overdue": "true"})
    assert stat["id"] not in {r["id"] for r in overdue}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"priority": "soon"}, "priority"),
        ({"destination": "surgery"}, "destination"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
        ({"cursor": encode_cursor([1, "2026-11-28T00:00:00+00:00", "not-an-id"])}, "cursor"),
        ({"cursor": encode_cursor([1, "2026-11-28T00:00:00", str(uuid.UUID(int=1))])}, "cursor"),
        ({"cursor": encode_cursor(["2026-11-28", str(uuid.UUID(int=1))])}, "cursor"),
        ({"limit": 500}, "limit"),
    ],
)
async def test_a_bad_worklist_filter_is_422_naming_it(
    params: dict[str, Any], field: str, referral_client: httpx.AsyncClient, team: Team
) -> None:
    response = await referral_client.get("/v1/referrals", params=params, headers=team.clinician)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]


# -- the closed loop -------------------------------------------------------------------------


async def test_an_accept_shows_on_the_intake(
    referral_client: httpx.AsyncClient, team: Team, clock: FakeClock, settings: Settings, engine: AsyncEngine
) -> None:
    async with serve(create_intake_app(settings, engine, run_workers=True)) as intake_client:
        submitted = await intake_client.post("/v1/intakes", json=intake_form(), headers=team.front_desk)
        assert submitted.status_code == 201, submitted.text
        intake_url = f"/v1/intakes/{submitted.json()['id']}"

        async def routed() -> dict[str, Any] | None:
            referral = (await intake_client.get(intake_url, headers=team.front_desk)).json()["referral"]
            return dict(referral) if referral else None

        summary = await eventually(routed)
        assert summary["status"] == "requested"
        clock.advance(dt.timedelta(minutes=30))
        accepted = await act(
            referral_client, summary["id"], "accept", team.for_destination(summary["destination"])
        )
        assert accepted.status_code == 200, accepted.text

        async def mirrored() -> bool:
            referral = (await intake_client.get(intake_url, headers=team.front_desk)).json()["referral"]
            return bool(referral["status"] == "accepted")

        await eventually(mirrored)


# -- who acted, by id ------------------------------------------------------------------------


async def _key_id(engine: AsyncEngine, name: str) -> str:
    return str(await query_value(engine, "SELECT id FROM access.api_keys WHERE name = :n", n=name))


async def test_history_names_the_acting_key_by_id_beside_its_name(desk: Desk) -> None:
    held = await desk.new_referral(destination="clinician_review")
    resolved = await act(
        desk.client, held["id"], "resolve", desk.team.clinician, body_for("resolve", desk.clock)
    )
    assert resolved.status_code == 200, resolved.text
    accepted = await act(desk.client, held["id"], "accept", desk.team.specialist["pain_management"])
    assert accepted.status_code == 200, accepted.text

    history = (await _get(desk.client, held["id"], desk.team.clinician))["history"]
    assert [(h["status"], h["by"], h["by_id"]) for h in history] == [
        ("needs_review", "triage", None),  # triage itself has no key
        ("requested", desk.team.name["clinician"], await _key_id(desk.engine, desk.team.name["clinician"])),
        (
            "accepted",
            desk.team.name["pain_management"],
            await _key_id(desk.engine, desk.team.name["pain_management"]),
        ),
    ]
    # The announcements name the same ids (`changed_by_id`).
    events = await desk.status_changes(held["id"])
    assert [(e["status"], e["changed_by"], e["changed_by_id"]) for e in events] == [
        (h["status"], h["by"], h["by_id"]) for h in history[1:]
    ]
