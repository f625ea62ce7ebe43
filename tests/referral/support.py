"""Helpers for the referral lifecycle, follow-up and report tests: keys for every role, referrals
in a chosen status (driven there through the HTTP actions), and what the queue recorded."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.clock import FakeClock
from services.vignettes import load_vignettes
from tests.conftest import MakeKey, auth, eventually, query

Headers = dict[str, str]
#: Publish an intake event as the intake service does (the `publish_intake` fixture); the intake id.
PublishIntake = Callable[..., Awaitable[uuid.UUID]]

#: A vignette per starting point: where triage sends it.
VIGNETTE_FOR = {
    "urgent_care": "P01",
    "pain_management": "P12",
    "regenerative_medicine": "P05",
    "clinician_review": "P24",
}


@dataclass(frozen=True)
class Team:
    """A key for every role; `name[...]` is what history records as `by`."""

    clinician: Headers
    admin: Headers
    front_desk: Headers
    specialist: dict[str, Headers]
    name: dict[str, str]

    def for_destination(self, destination: str) -> Headers:
        return self.clinician if destination == "clinician_review" else self.specialist[destination]


async def make_team(make_key: MakeKey) -> Team:
    tag = uuid.uuid4().hex[:6]
    names = {role: f"{role}-{tag}" for role in ("clinician", "admin", "front_desk")}
    names |= {d: f"specialist-{d}-{tag}" for d in ("urgent_care", "pain_management", "regenerative_medicine")}
    return Team(
        clinician=auth(await make_key("clinician", name=names["clinician"])),
        admin=auth(await make_key("admin", name=names["admin"])),
        front_desk=auth(await make_key("front_desk", name=names["front_desk"])),
        specialist={
            d: auth(await make_key("specialist", destination=d, name=names[d]))
            for d in ("urgent_care", "pain_management", "regenerative_medicine")
        },
        name=names,
    )


def vignette_body(vignette_id: str, today: dt.date) -> dict[str, Any]:
    body = next(v for v in load_vignettes(today) if v.id == vignette_id).body
    body["patient"]["mrn"] = f"{vignette_id}-{uuid.uuid4().hex[:8]}"
    return body


async def new_referral(
    client: httpx.AsyncClient,
    publish_intake: PublishIntake,
    team: Team,
    clock: FakeClock,
    *,
    destination: str = "pain_management",
    vignette: str | None = None,
) -> dict[str, Any]:
    """A referral triaged from a fresh intake (by the running triage consumer)."""
    intake_id = await publish_intake(vignette_body(vignette or VIGNETTE_FOR[destination], clock.now().date()))
    [referral] = await eventually(lambda: referrals_for(client, team.clinician, intake_id))
    return dict(referral)


async def act(
    client: httpx.AsyncClient,
    referral_id: str,
    action: str,
    headers: Headers,
    body: dict[str, Any] | None = None,
) -> httpx.Response:
    return await client.post(f"/v1/referrals/{referral_id}/{action}", json=body, headers=headers)


def body_for(action: str, clock: FakeClock) -> dict[str, Any] | None:
    """A valid body for each action."""
    if action == "decline":
        return {"reason": "not a case for this clinic"}
    if action == "cancel":
        return {"reason": "patient moved away"}
    if action == "schedule":
        return {"appointment_at": (clock.now() + dt.timedelta(days=3)).isoformat()}
    if action == "resolve":
        return {"destination": "pain_management", "priority": "routine", "note": "no red flag on review"}
    return None


#: How to reach each status from a fresh referral: (destination to start at, actions in order).
PATH_TO = {
    "needs_review": ("clinician_review", []),
    "requested": ("pain_management", []),
    "accepted": ("pain_management", ["accept"]),
    "declined": ("pain_management", ["decline"]),
    "scheduled": ("pain_management", ["accept", "schedule"]),
    "completed": ("pain_management", ["accept", "schedule", "complete"]),
    "no_show": ("pain_management", ["accept", "schedule", "no-show"]),
    "cancelled": ("pain_management", ["cancel"]),
}


async def referral_in(
    status: str,
    client: httpx.AsyncClient,
    publish_intake: PublishIntake,
    team: Team,
    clock: FakeClock,
    *,
    destination: str | None = None,
) -> dict[str, Any]:
    """A fresh referral driven to `status` through the HTTP actions, a minute between moves."""
    start, path = PATH_TO[status]
    referral = await new_referral(client, publish_intake, team, clock, destination=destination or start)
    for action in path:
        clock.advance(dt.timedelta(minutes=1))
        response = await act(
            client,
            referral["id"],
            action,
            team.for_destination(referral["destination"]),
            body_for(action, clock),
        )
        assert response.status_code == 200, response.text
        referral = response.json()
    assert referral["status"] == status
    return referral


async def events_about(engine: AsyncEngine, subject: str, event_type: str) -> list[dict[str, Any]]:
    """The payloads of the events of `event_type` about `subject`, oldest first."""
    rows = await query(
        engine,
        "SELECT payload FROM queue.events WHERE subject = CAST(:s AS uuid) AND type = :t "
        "ORDER BY occurred_at, id",
        s=subject,
        t=event_type,
    )
    return [dict(row.payload) for row in rows]


async def triage_settled(engine: AsyncEngine) -> bool:
    """No intake event is waiting for the triage consumer (but those failing for good)."""
    async with engine.connect() as conn:
        waiting = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM queue.deliveries WHERE consumer = 'referral.triage' "
                    "AND status = 'pending' AND last_error IS NULL"
                )
            )
        ).scalar_one()
    return waiting == 0


async def referrals_for(
    client: httpx.AsyncClient, headers: dict[str, str], intake_id: uuid.UUID
) -> list[dict]:
    response = await client.get("/v1/referrals", params={"intake_id": str(intake_id)}, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


@dataclass(frozen=True)
class Desk:
    """The referral service with its consumers running (`client`), and what a test drives it
    with: intake events as the intake service publishes them, a key for every role, the app's
    clock and the database (the `desk` fixture)."""

    client: httpx.AsyncClient
    publish_intake: PublishIntake
    team: Team
    clock: FakeClock
    engine: AsyncEngine

    async def triaged(self, vignette_id: str) -> tuple[dict[str, Any], uuid.UUID, dict[str, Any]]:
        """A fresh intake of the vignette: its body, its id, and the referral triage made of it."""
        body = vignette_body(vignette_id, self.clock.now().date())
        intake_id = await self.publish_intake(body)
        [referral] = await eventually(lambda: referrals_for(self.client, self.team.clinician, intake_id))
        return body, intake_id, referral

    async def amend(self, body: dict[str, Any], intake_id: uuid.UUID, version: int) -> list[dict[str, Any]]:
        """Publish version `version` of the intake; the intake's referrals once triage has taken it."""
        await self.publish_intake(body, intake_id=intake_id, version=version, amended=True)

        async def taken() -> list[dict[str, Any]]:
            items = await referrals_for(self.client, self.team.clinician, intake_id)
            return items if any(r["intake_version"] == version for r in items) else []

        return list(await eventually(taken))

    async def new_referral(
        self, *, destination: str = "pain_management", vignette: str | None = None
    ) -> dict[str, Any]:
        return await new_referral(
            self.client,
            self.publish_intake,
            self.team,
            self.clock,
            destination=destination,
            vignette=vignette,
        )

    async def referral_in(self, status: str, *, destination: str | None = None) -> dict[str, Any]:
        return await referral_in(
            status, self.client, self.publish_intake, self.team, self.clock, destination=destination
        )

    async def status_changes(self, referral_id: str) -> list[dict[str, Any]]:
        """The `referral.status_changed` events about the referral, oldest first."""
        return await events_about(self.engine, referral_id, "referral.status_changed")
