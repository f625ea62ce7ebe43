"""The closed-loop report on a known set of referrals, driven through the HTTP actions with the
clock moved between steps, in a period of its own (March 2020) so other tests' referrals stay out."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.clock import FakeClock
from tests.conftest import eventually
from tests.referral.support import PublishIntake, Team, act, new_referral, triage_settled

#: Each test's known set gets a period of its own, a quarter apart.
PERIODS = itertools.count()
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def _at(clock: FakeClock, when: dt.datetime) -> None:
    clock.current = when


async def _report(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> httpx.Response:
    return await client.get("/v1/reports/referrals", params=params, headers=headers)


@pytest.fixture
def t0() -> dt.datetime:
    return dt.datetime(2020, 3, 2, 9, 0, tzinfo=dt.UTC) + next(PERIODS) * dt.timedelta(days=91)


@pytest.fixture
async def known_set(
    t0: dt.datetime,
    referral_client: httpx.AsyncClient,
    publish_intake: PublishIntake,
    team: Team,
    clock: FakeClock,
    engine: AsyncEngine,
) -> dict[str, dict[str, Any]]:
    """Eight referrals created at t0 and one redirected at t0+4h, moved as the timeline says;
    the clock ends at t0+8d."""
    await eventually(lambda: triage_settled(engine))  # nobody else's intake lands in our period
    _at(clock, t0)
    made = {
        name: await new_referral(referral_client, publish_intake, team, clock, vignette=vignette)
        for name, vignette in {
            "A": "P12",  # pain_management routine
            "B": "P06",  # pain_management routine
            "C": "P05",  # regenerative_medicine routine
            "D": "P01",  # urgent_care stat
            "E": "P09",  # urgent_care urgent
            "F": "P24",  # clinician_review urgent (held)
            "G": "P13",  # pain_management routine
            "H": "P33",  # pain_management routine
        }.items()
    }
    assert all(dt.datetime.fromisoformat(r["created_at"]) == t0 for r in made.values())

    async def step(after: dt.timedelta, name: str, action: str, body: dict[str, Any] | None = None) -> None:
        _at(clock, t0 + after)
        response = await act(referral_client, made[name]["id"], action, team.clinician, body)
        assert response.status_code == 200, response.text
        made[name] = response.json()

    appointment = {"appointment_at": (t0 + 10 * DAY).isoformat()}
    await step(1 * HOUR, "D", "accept")
    await step(2 * HOUR, "A", "accept")
    await step(3 * HOUR, "E", "accept")
    await step(4 * HOUR, "B", "decline", {"reason": "not a pain-management case"})
    await step(
        4 * HOUR, "H", "decline", {"reason": "stem-cell candidate", "redirect_to": "regenerative_medicine"}
    )
    await step(10 * HOUR, "C", "accept")
    await step(1 * DAY, "A", "schedule", appointment)
    await step(2 * DAY, "D", "schedule", appointment)
    await step(5 * DAY, "C", "schedule", appointment)
    await step(6 * DAY, "A", "complete")
    await step(7 * DAY, "D", "no-show")
    await step(8 * DAY, "G", "cancel", {"reason": "patient chose another clinic"})
    return made


async def test_report_counts_timings_overdue_and_closed_share_on_a_known_set(
    t0: dt.datetime,
    known_set: dict[str, dict[str, Any]],
    referral_client: httpx.AsyncClient,
    team: Team,
    clock: FakeClock,
) -> None:
    response = await _report(
        referral_client, team.clinician, since=t0.isoformat(), until=(t0 + DAY).isoformat()
    )

    assert response.status_code == 200, response.text
    report = response.json()
    assert dt.datetime.fromisoformat(report["as_of"]) == clock.now() == t0 + 8 * DAY
    assert report["total"] == 9  # A-H and H's successor, created at t0+4h
    assert report["by_destination"] == {
        "urgent_care": 2, "pain_management": 4, "regenerative_medicine": 2, "clinician_review": 1,
    }  # fmt: skip
    assert report["by_priority"] == {"stat": 1, "urgent": 2, "routine": 6}
    assert report["by_status"] == {
        "needs_review": 1, "requested": 1, "accepted": 1, "declined": 2,
        "scheduled": 1, "completed": 1, "no_show": 1, "cancelled": 1,
    }  # fmt: skip
    # Accepted after 1 h, 2 h, 3 h and 10 h: median 2.5 h; p90 3 h + 0.7 * 7 h = 7.9 h.
    assert report["time_to_acceptance"] == {
        "count": 4,
        "median_seconds": 2.5 * 3600,
        "p90_seconds": 7.9 * 3600,
    }
    # Scheduled after 24 h, 48 h and 120 h: median 48 h; p90 48 h + 0.8 * 72 h = 105.6 h.
    assert report["time_to_scheduling"] == {
        "count": 3, "median_seconds": 48 * 3600, "p90_seconds": pytest.approx(105.6 * 3600),
    }  # fmt: skip
    # Open at t0+8d: C (scheduled, due t0+14d), E (accepted, due t0+1d), F (held, due t0+1d),
    # H's successor (requested, due t0+4h+14d): E and F are overdue.
    assert report["open_overdue"] == {
        "total": 2,
        "by_destination": {
            "urgent_care": 1,
            "pain_management": 0,
            "regenerative_medicine": 0,
            "clinician_review": 1,
        },
        "by_priority": {"stat": 0, "urgent": 2, "routine": 0},
    }
    # Closed: A completed, B declined with a reason, D no-show. H, declined with a redirect,
    # handed its loop to its successor and is left out of `of`: 3 of 8.
    closed = report["closed"]
    assert (closed["closed"], closed["of"], closed["share"]) == (3, 8, 0.375)
    assert "completed, no_show, or declined with a (non-blank) reason" in closed["definition"]


async def test_report_for_one_destination_and_for_an_empty_period(
    t0: dt.datetime, known_set: dict[str, dict[str, Any]], referral_client: httpx.AsyncClient, team: Team
) -> None:
    period = {"since": t0.isoformat(), "until": (t0 + DAY).isoformat()}
    pain = (await _report(referral_client, team.admin, destination="pain_management", **period)).json()
    assert pain["total"] == 4 and pain["destination"] == "pain_management"
    assert pain["by_status"]["declined"] == 2 and pain["by_status"]["completed"] == 1
    assert pain["time_to_acceptance"] == {"count": 1, "median_seconds": 7200.0, "p90_seconds": 7200.0}
    assert (pain["closed"]["closed"], pain["closed"]["of"]) == (2, 3)

    # Dates mean their midnight UTC.
    later_day = (t0 + DAY).date()
    later = (await _report(referral_client, team.clinician, since=later_day.isoformat(),
                           until=(later_day + DAY).isoformat())).json()  # fmt: skip
    assert dt.datetime.fromisoformat(later["since"]) == dt.datetime.combine(later_day, dt.time(), dt.UTC)
    assert later["total"] == 0 and set(later["by_status"].values()) == {0}
    assert later["time_to_acceptance"] == {"count": 0, "median_seconds": None, "p90_seconds": None}
    assert later["closed"]["share"] is None and later["open_overdue"]["total"] == 0


async def test_report_defaults_to_the_last_thirty_days(
    referral_client: httpx.AsyncClient, team: Team, clock: FakeClock
) -> None:
    report = (await _report(referral_client, team.clinician)).json()
    assert dt.datetime.fromisoformat(report["until"]) == clock.now()
    assert dt.datetime.fromisoformat(report["since"]) == clock.now() - dt.timedelta(days=30)


async def test_report_is_for_clinicians_and_admins_and_checks_its_period(
    referral_client: httpx.AsyncClient, team: Team, t0: dt.datetime
) -> None:
    assert (await _report(referral_client, team.front_desk)).status_code == 403
    assert (await _report(referral_client, team.specialist["pain_management"])).status_code == 403
    assert (await _report(referral_client, team.admin)).status_code == 200
    backwards = await _report(referral_client, team.clinician, since=t0.isoformat(), until=t0.isoformat())
    assert backwards.status_code == 422 and backwards.json()["errors"][0]["field"] == "since"
    bad = await _report(referral_client, team.clinician, destination="surgery")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "destination"
    unreadable = await _report(referral_client, team.clinician, since="last tuesday")
    assert unreadable.status_code == 422 and unreadable.json()["errors"][0]["field"] == "since"
