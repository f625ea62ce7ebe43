"""Follow-ups after a regenerative procedure: scheduled on completion at the configured offsets,
emitted once each as `referral.follow_up_due` when their day comes (by the app's clock, across
restarts and replicas), listed on the referral and in their worklist, and marked done."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.common.clock import FakeClock
from services.common.settings import Settings
from services.referral.app import create_app
from services.referral.followups.scheduler import FollowUpScheduler
from tests.conftest import eventually, serve
from tests.referral.support import Desk, PublishIntake, Team, events_about

OFFSETS = (14, 42, 91, 182)
DUE = "referral.follow_up_due"


def scheduler(engine: AsyncEngine, clock: FakeClock, batch_size: int = 100) -> FollowUpScheduler:
    return FollowUpScheduler(
        async_sessionmaker(engine, expire_on_commit=False), clock, poll_seconds=0.1, batch_size=batch_size
    )


async def completed(desk: Desk) -> dict[str, Any]:
    return await desk.referral_in("completed", destination="regenerative_medicine")


async def due_events(engine: AsyncEngine, referral_id: str) -> list[dict[str, Any]]:
    return await events_about(engine, referral_id, DUE)


async def follow_ups(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    response = await client.get("/v1/follow-ups", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def _events_by_follow_up(events: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        counts[event["follow_up_id"]] = counts.get(event["follow_up_id"], 0) + 1
    return counts


async def test_completing_a_regenerative_referral_schedules_follow_ups_at_the_offsets(desk: Desk) -> None:
    referral = await completed(desk)

    today = desk.clock.now().date()
    expected = [(today + dt.timedelta(days=d)).isoformat() for d in OFFSETS]
    assert [(f["due_on"], f["status"]) for f in referral["follow_ups"]] == [
        (d, "scheduled") for d in expected
    ]
    listed = await follow_ups(
        desk.client, desk.team.specialist["regenerative_medicine"], referral_id=referral["id"]
    )
    assert [f["due_on"] for f in listed] == expected
    assert {f["id"] for f in listed} == {f["id"] for f in referral["follow_ups"]}
    first = listed[0]
    assert (first["destination"], first["intake_id"], first["status"]) == (
        "regenerative_medicine", referral["intake_id"], "scheduled",
    )  # fmt: skip
    assert first["patient"] == referral["patient"]
    assert first["emitted_at"] is None and first["done_at"] is None


async def test_completing_a_referral_elsewhere_schedules_no_follow_ups(desk: Desk) -> None:
    referral = await desk.referral_in("completed")
    assert referral["destination"] == "pain_management"
    assert referral["follow_ups"] == []
    assert await follow_ups(desk.client, desk.team.clinician, referral_id=referral["id"]) == []


async def test_a_follow_up_is_emitted_once_when_its_day_comes(desk: Desk) -> None:
    referral = await completed(desk)
    first, *later = referral["follow_ups"]

    desk.clock.advance(dt.timedelta(days=13))
    await scheduler(desk.engine, desk.clock).run_once()  # a scheduler pass the day before: nothing yet
    assert await due_events(desk.engine, referral["id"]) == []

    desk.clock.advance(dt.timedelta(days=1))
    [event] = await eventually(lambda: due_events(desk.engine, referral["id"]))  # the app's own scheduler
    assert event == {
        "referral_id": referral["id"],
        "intake_id": referral["intake_id"],
        "follow_up_id": first["id"],
        "destination": "regenerative_medicine",
        "due_on": first["due_on"],
    }
    await scheduler(desk.engine, desk.clock).run_once()
    assert len(await due_events(desk.engine, referral["id"])) == 1

    headers = desk.team.specialist["regenerative_medicine"]
    [due] = await follow_ups(desk.client, headers, referral_id=referral["id"], status="due")
    assert due["id"] == first["id"]
    assert dt.datetime.fromisoformat(due["emitted_at"]) == desk.clock.now()
    waiting = await follow_ups(desk.client, headers, referral_id=referral["id"], status="scheduled")
    assert [f["id"] for f in waiting] == [f["id"] for f in later]
    shown = (await desk.client.get(f"/v1/referrals/{referral['id']}", headers=headers)).json()
    assert [f["status"] for f in shown["follow_ups"]] == ["due", "scheduled", "scheduled", "scheduled"]


async def test_each_follow_up_is_emitted_once_for_good_even_if_put_back(desk: Desk) -> None:
    referral = await completed(desk)
    ids = {f["id"] for f in referral["follow_ups"]}

    desk.clock.advance(dt.timedelta(days=200))

    async def all_four() -> list[dict[str, Any]]:
        events = await due_events(desk.engine, referral["id"])
        return events if len(events) == len(ids) else []

    events = await eventually(all_four)
    assert _events_by_follow_up(events) == dict.fromkeys(ids, 1)
    # As if a restore or an operator put one back: it is claimed again, but never re-emitted.
    async with desk.engine.begin() as conn:
        await conn.execute(
            text("UPDATE referral.follow_ups SET status = 'scheduled', emitted_at = NULL WHERE id = :id"),
            {"id": referral["follow_ups"][0]["id"]},
        )
    await scheduler(desk.engine, desk.clock).run_once()
    assert _events_by_follow_up(await due_events(desk.engine, referral["id"])) == dict.fromkeys(ids, 1)


async def test_a_follow_up_that_came_due_while_no_scheduler_ran_is_emitted_after_restart(
    settings: Settings, engine: AsyncEngine, publish_intake: PublishIntake, team: Team, clock: FakeClock
) -> None:
    async with serve(create_app(settings, engine, run_workers=True, clock=clock)) as client:
        desk = Desk(client, publish_intake, team, clock, engine)
        referral = await completed(desk)
    clock.advance(dt.timedelta(days=15))  # the service is down on the day
    assert await due_events(engine, referral["id"]) == []

    async with serve(create_app(settings, engine, run_workers=True, clock=clock)):
        [event] = await eventually(lambda: due_events(engine, referral["id"]))
    assert event["follow_up_id"] == referral["follow_ups"][0]["id"]


async def test_schedulers_side_by_side_emit_each_follow_up_once(
    settings: Settings, engine: AsyncEngine, publish_intake: PublishIntake, team: Team, clock: FakeClock
) -> None:
    async with serve(create_app(settings, engine, run_workers=True, clock=clock)) as client:
        desk = Desk(client, publish_intake, team, clock, engine)
        referrals = [await completed(desk) for _ in range(3)]
    ids = {f["id"] for r in referrals for f in r["follow_ups"]}
    clock.advance(dt.timedelta(days=365))

    await asyncio.gather(*(scheduler(engine, clock, batch_size=1).run_once() for _ in range(4)))

    events = [e for r in referrals for e in await due_events(engine, r["id"])]
    assert _events_by_follow_up(events) == dict.fromkeys(ids, 1)
    async with AsyncSession(engine) as session:
        statuses = (
            await session.execute(
                text("SELECT status FROM referral.follow_ups WHERE id = ANY(CAST(:ids AS uuid[]))"),
                {"ids": list(ids)},
            )
        ).scalars()
        assert set(statuses) == {"due"}


async def test_marking_a_follow_up_done(desk: Desk) -> None:
    referral = await completed(desk)
    first, *later = referral["follow_ups"]
    url = f"/v1/follow-ups/{first['id']}/done"
    desk.clock.advance(dt.timedelta(days=3))

    assert (await desk.client.post(url, headers=desk.team.front_desk)).status_code == 403
    assert (await desk.client.post(url, headers=desk.team.specialist["pain_management"])).status_code == 404
    done = await desk.client.post(url, headers=desk.team.specialist["regenerative_medicine"])
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["done_by"]) == (
        "done",
        desk.team.name["regenerative_medicine"],
    )
    assert dt.datetime.fromisoformat(done.json()["done_at"]) == desk.clock.now()
    again = await desk.client.post(url, headers=desk.team.clinician)
    assert again.status_code == 409
    assert (again.json()["current_status"], again.json()["allowed_actions"]) == ("done", [])

    # Done before its day: it is never emitted; the others are.
    desk.clock.advance(dt.timedelta(days=365))
    await scheduler(desk.engine, desk.clock).run_once()
    emitted = {e["follow_up_id"] for e in await due_events(desk.engine, referral["id"])}
    assert emitted == {f["id"] for f in later}
    shown = (await desk.client.get(f"/v1/referrals/{referral['id']}", headers=desk.team.clinician)).json()
    assert [f["status"] for f in shown["follow_ups"]] == ["done", "due", "due", "due"]


async def test_follow_up_worklist_filters_pages_and_scopes(desk: Desk) -> None:
    referral = await completed(desk)
    ids = [f["id"] for f in referral["follow_ups"]]
    regen = desk.team.specialist["regenerative_medicine"]

    day_42 = (desk.clock.now() + dt.timedelta(days=42)).date().isoformat()
    before = await follow_ups(desk.client, regen, referral_id=referral["id"], due_before=day_42)
    assert [f["id"] for f in before] == ids[:1]

    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"referral_id": referral["id"], "limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = (await desk.client.get("/v1/follow-ups", params=params, headers=regen)).json()
        seen += [f["id"] for f in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids

    pain = desk.team.specialist["pain_management"]
    assert await follow_ups(desk.client, pain, referral_id=referral["id"]) == []
    mine_only = await follow_ups(desk.client, pain, limit=200)
    assert {f["destination"] for f in mine_only} <= {"pain_management"}
    refused = await desk.client.get(
        "/v1/follow-ups", params={"destination": "regenerative_medicine"}, headers=pain
    )
    assert refused.status_code == 403
    bad = await desk.client.get("/v1/follow-ups", params={"status": "overdue"}, headers=regen)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "status"
    assert len(await follow_ups(desk.client, desk.team.front_desk, referral_id=referral["id"])) == len(ids)
