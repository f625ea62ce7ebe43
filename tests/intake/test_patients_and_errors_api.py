"""The JSON API's side of the front-desk work: every error of a body at once, `GET /v1/patients`,
and the routing details (reasons, due time) the mirror keeps for the pages."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.settings import Settings
from services.intake.app import create_app
from services.intake.intakes.reads import routing_of
from tests.intake.conftest import intake_form
from tests.intake.test_referral_mirror import changed, created, deliver


async def test_a_body_with_several_errors_gets_all_of_them(
    client: AsyncTestClient[Any], front_desk: dict[str, str], row_counts: Any
) -> None:
    form = intake_form()
    del form["patient"]["family_name"]
    form["complaint"]["intensity"] = 11
    form["complaint"]["trend"] = "sideways"
    form["treatments_tried"] = [{"treatment": "leeches", "outcome": "no_relief"}, {"outcome": "good_relief"}]
    del form["red_flags"]["saddle_numbness"]
    form["red_flags"]["fever_or_chills"] = "maybe"
    before = await row_counts()
    response = await client.post("/v1/intakes", json=form, headers=front_desk)
    assert response.status_code == 422
    errors = {e["field"]: e for e in response.json()["errors"]}
    assert set(errors) == {
        "patient.family_name",
        "complaint.intensity",
        "complaint.trend",
        "treatments_tried[0].treatment",
        "treatments_tried[1].treatment",
        "red_flags.saddle_numbness",
        "red_flags.fever_or_chills",
    }
    assert errors["patient.family_name"]["message"] == "This field is required."
    assert errors["complaint.trend"]["allowed"] == ["improving", "stable", "worsening"]
    assert errors["red_flags.fever_or_chills"]["allowed"] == ["yes", "no", "unsure"]
    assert await row_counts() == before


async def test_the_first_error_alone_is_still_reported_as_before(
    client: AsyncTestClient[Any], front_desk: dict[str, str]
) -> None:
    form = intake_form()
    form["complaint"]["intensity"] = 11
    response = await client.post("/v1/intakes", json=form, headers=front_desk)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "complaint.intensity", "message": "Expected `int` <= 10"}]


async def test_patients_are_found_by_name_birth_date_and_mrn(
    client: AsyncTestClient[Any], front_desk: dict[str, str]
) -> None:
    family = f"Findme{uuid.uuid4().hex[:6]}"
    made = []
    for given, birth in (("Ana", "1980-02-03"), ("ana", "1990-05-06"), ("Ben", "1980-02-03")):
        form = intake_form()
        form["patient"].update(given_name=given, family_name=family, birth_date=birth)
        made.append((await client.post("/v1/intakes", json=form, headers=front_desk)).json())

    async def find(**params: str) -> list[str]:
        response = await client.get("/v1/patients", params=params, headers=front_desk)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["items"]]

    assert len(await find(family_name=family.upper())) == 3
    assert len(await find(family_name=family, given_name="ANA")) == 2
    assert await find(family_name=family, given_name="Ana", birth_date="1980-02-03") == [
        made[0]["patient_id"]
    ]
    assert await find(mrn=made[2]["patient"]["mrn"]) == [made[2]["patient_id"]]
    first = await client.get("/v1/patients", params={"family_name": family, "limit": 2}, headers=front_desk)
    page = first.json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = await client.get(
        "/v1/patients",
        params={"family_name": family, "limit": 2, "cursor": page["next_cursor"]},
        headers=front_desk,
    )
    assert len(rest.json()["items"]) == 1 and rest.json()["next_cursor"] is None
    ids = [p["id"] for p in page["items"]] + [p["id"] for p in rest.json()["items"]]
    assert sorted(ids) == sorted(m["patient_id"] for m in made)


async def test_patients_need_a_reader_key_and_good_filters(
    client: AsyncTestClient[Any], front_desk: dict[str, str], make_key: Any
) -> None:
    assert (await client.get("/v1/patients")).status_code == 401
    specialist = await make_key("specialist", destination="pain_management")
    response = await client.get("/v1/patients", headers={"Authorization": f"Bearer {specialist}"})
    assert response.status_code == 403
    bad = await client.get("/v1/patients", params={"birth_date": "yesterday"}, headers=front_desk)
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["birth_date"]


@pytest.fixture
async def with_workers(settings: Settings, engine: AsyncEngine) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(settings, engine, run_workers=True)) as test_client:
        yield test_client


async def test_the_mirror_keeps_the_reasons_and_due_time(
    with_workers: AsyncTestClient[Any], front_desk: dict[str, str], engine: AsyncEngine
) -> None:
    intake = (await with_workers.post("/v1/intakes", json=intake_form(), headers=front_desk)).json()
    subject, rid = uuid.UUID(intake["id"]), uuid.uuid4()
    reasons = [{"code": "CHRONIC", "text": "Chronic pain from a condition."}]
    await deliver(engine, created(intake["id"], rid, reasons=reasons), subject)
    async with AsyncSession(engine) as session:
        routing = await routing_of(session, subject)
    assert routing is not None and routing.reasons == reasons
    first_due = routing.due_by
    assert first_due is not None
    later = first_due + datetime.timedelta(days=1)
    await deliver(
        engine,
        changed(intake["id"], rid, "accepted", first_due - datetime.timedelta(days=13), due_by=later),
        subject,
    )
    async with AsyncSession(engine) as session:
        routing = await routing_of(session, subject)
    assert routing is not None and routing.status == "accepted" and routing.due_by == later
    assert routing.reasons == reasons
