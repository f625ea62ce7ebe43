"""Patients are matched by MRN and corrected by later forms without losing what was recorded;
an amendment is a new version, and earlier versions stay readable."""

from __future__ import annotations

import uuid
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.access.auth import hash_key
from tests.conftest import MakeKey, auth, query
from tests.intake.conftest import Counts, events_for, intake_form, unique_mrn


async def _patient(engine: AsyncEngine, patient_id: str) -> dict[str, Any]:
    [row] = await query(engine, "SELECT * FROM intake.patients WHERE id = CAST(:id AS uuid)", id=patient_id)
    changes = await query(
        engine,
        "SELECT previous, changed_by FROM intake.patient_changes "
        "WHERE patient_id = CAST(:id AS uuid) ORDER BY id",
        id=patient_id,
    )
    return {**row._asdict(), "changes": [dict(c._asdict()) for c in changes]}


async def test_a_second_intake_for_the_same_mrn_reuses_the_patient(
    client: AsyncTestClient[Any], front_desk: dict[str, str], engine: AsyncEngine
) -> None:
    mrn = unique_mrn()
    first = (await client.post("/v1/intakes", json=intake_form(mrn), headers=front_desk)).json()
    second = (await client.post("/v1/intakes", json=intake_form(mrn), headers=front_desk)).json()
    assert first["id"] != second["id"]
    assert first["patient_id"] == second["patient_id"]
    assert (await _patient(engine, first["patient_id"]))["changes"] == []


async def test_a_known_mrn_with_another_name_or_birth_date_is_a_409_naming_each_and_stores_nothing(
    client: AsyncTestClient[Any], front_desk: dict[str, str], engine: AsyncEngine, row_counts: Counts
) -> None:
    mrn = unique_mrn()
    first = (await client.post("/v1/intakes", json=intake_form(mrn), headers=front_desk)).json()
    before = await row_counts()
    form = intake_form(mrn)
    form["patient"].update(family_name="Silva-Costa", birth_date="1971-04-03")
    response = await client.post("/v1/intakes", json=form, headers=front_desk)
    assert response.status_code == 409, response.text
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == ["patient.family_name", "patient.birth_date"]
    assert "Silva" not in response.text  # the recorded identity is not disclosed
    assert await row_counts() == before
    patient = await _patient(engine, first["patient_id"])
    assert (patient["family_name"], str(patient["birth_date"])) == ("Silva", "1971-04-02")


async def test_an_amendment_corrects_the_patient_and_keeps_the_previous_values(
    client: AsyncTestClient[Any], front_desk: dict[str, str], engine: AsyncEngine
) -> None:
    mrn = unique_mrn()
    first = (await client.post("/v1/intakes", json=intake_form(mrn), headers=front_desk)).json()
    form = intake_form(mrn)
    form["patient"].update(family_name="Silva-Costa", phone=None, birth_date="1971-04-03")
    response = await client.post(f"/v1/intakes/{first['id']}/amendments", json=form, headers=front_desk)
    assert response.status_code == 201, response.text

    patient = await _patient(engine, first["patient_id"])
    assert patient["family_name"] == "Silva-Costa"
    assert str(patient["birth_date"]) == "1971-04-03"
    assert patient["phone"] == "+1 555 0100"  # a form without a phone does not erase it
    assert [c["previous"] for c in patient["changes"]] == [
        {"family_name": "Silva", "birth_date": "1971-04-02"}
    ]
    # The first version still shows the patient as its own form gave them.
    earlier = (await client.get(f"/v1/intakes/{first['id']}/versions/1", headers=front_desk)).json()
    assert earlier["patient"]["family_name"] == "Silva"
    # A new intake under the MRN now agrees with the corrected record.
    again = await client.post("/v1/intakes", json=form, headers=front_desk)
    assert again.status_code == 201 and again.json()["patient_id"] == first["patient_id"]


async def test_intakes_without_mrn_each_get_a_new_patient(
    client: AsyncTestClient[Any], front_desk: dict[str, str]
) -> None:
    forms = [intake_form(), intake_form()]
    for form in forms:
        form["patient"]["mrn"] = None
    ids = [(await client.post("/v1/intakes", json=f, headers=front_desk)).json()["patient_id"] for f in forms]
    assert ids[0] != ids[1]


async def test_amendment_is_a_new_version_and_earlier_versions_stay_readable(
    client: AsyncTestClient[Any], front_desk: dict[str, str], engine: AsyncEngine
) -> None:
    form = intake_form()
    created = (await client.post("/v1/intakes", json=form, headers=front_desk)).json()
    amended_form = intake_form(form["patient"]["mrn"])
    amended_form["red_flags"]["limb_weakness"] = "yes"
    amended_form["complaint"]["intensity"] = 8
    response = await client.post(
        f"/v1/intakes/{created['id']}/amendments", json=amended_form, headers=front_desk
    )
    assert response.status_code == 201, response.text
    amended = response.json()

    assert amended["id"] == created["id"] and amended["version"] == 2
    assert amended["red_flags"]["limb_weakness"] == "yes" and amended["complaint"]["intensity"] == 8
    assert amended["submitted_at"] == created["submitted_at"]
    assert amended["amended_at"] is not None and amended["amended_by"] == created["submitted_by"]
    current = (await client.get(f"/v1/intakes/{created['id']}", headers=front_desk)).json()
    assert current == amended
    first = (await client.get(f"/v1/intakes/{created['id']}/versions/1", headers=front_desk)).json()
    assert first == created
    versions = (await client.get(f"/v1/intakes/{created['id']}/versions", headers=front_desk)).json()
    assert [v["version"] for v in versions["items"]] == [1, 2]
    assert versions["items"][1] == amended and versions["next_cursor"] is None

    events = await events_for(engine, created["id"])
    assert [e["type"] for e in events] == ["intake.submitted", "intake.amended"]
    assert events[1]["data"]["intake_version"] == 2
    assert events[1]["data"]["intake"]["red_flags"]["limb_weakness"] == "yes"


async def test_versions_page_with_a_cursor(client: AsyncTestClient[Any], front_desk: dict[str, str]) -> None:
    form = intake_form()
    intake = (await client.post("/v1/intakes", json=form, headers=front_desk)).json()
    for intensity in (3, 4):
        form["complaint"]["intensity"] = intensity
        await client.post(f"/v1/intakes/{intake['id']}/amendments", json=form, headers=front_desk)
    url = f"/v1/intakes/{intake['id']}/versions"
    page = (await client.get(url, params={"limit": 2}, headers=front_desk)).json()
    rest = (await client.get(url, params={"cursor": page["next_cursor"]}, headers=front_desk)).json()
    assert [v["version"] for v in page["items"] + rest["items"]] == [1, 2, 3]
    assert rest["next_cursor"] is None


async def test_amendment_with_a_known_mrn_moves_the_intake_to_that_patient(
    client: AsyncTestClient[Any], front_desk: dict[str, str]
) -> None:
    right = (await client.post("/v1/intakes", json=intake_form(), headers=front_desk)).json()
    wrong = (await client.post("/v1/intakes", json=intake_form(), headers=front_desk)).json()
    corrected = intake_form(right["patient"]["mrn"])
    amended = (
        await client.post(f"/v1/intakes/{wrong['id']}/amendments", json=corrected, headers=front_desk)
    ).json()
    assert amended["patient_id"] == right["patient_id"]
    # ... but not to a patient recorded with another birth date.
    other = intake_form(right["patient"]["mrn"])
    other["patient"]["birth_date"] = "1980-01-01"
    third = (await client.post("/v1/intakes", json=intake_form(), headers=front_desk)).json()
    refused = await client.post(f"/v1/intakes/{third['id']}/amendments", json=other, headers=front_desk)
    assert refused.status_code == 409 and refused.json()["errors"][0]["field"] == "patient.birth_date"


async def test_amendment_giving_a_first_mrn_keeps_the_patient(
    client: AsyncTestClient[Any], front_desk: dict[str, str], engine: AsyncEngine
) -> None:
    form = intake_form()
    form["patient"]["mrn"] = None
    intake = (await client.post("/v1/intakes", json=form, headers=front_desk)).json()
    mrn = unique_mrn()
    amended = (
        await client.post(f"/v1/intakes/{intake['id']}/amendments", json=intake_form(mrn), headers=front_desk)
    ).json()
    assert amended["patient_id"] == intake["patient_id"]
    patient = await _patient(engine, intake["patient_id"])
    assert patient["mrn"] == mrn and patient["changes"][0]["previous"] == {"mrn": None}


async def test_amending_an_unknown_intake_is_404_and_stores_nothing(
    client: AsyncTestClient[Any], front_desk: dict[str, str], row_counts: Counts
) -> None:
    before = await row_counts()
    response = await client.post(
        f"/v1/intakes/{uuid.uuid4()}/amendments",
        json=intake_form(),
        headers={**front_desk, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await row_counts() == before


async def test_a_bad_amendment_is_refused_and_leaves_the_intake_as_it_was(
    client: AsyncTestClient[Any], front_desk: dict[str, str], row_counts: Counts
) -> None:
    intake = (await client.post("/v1/intakes", json=intake_form(), headers=front_desk)).json()
    form = intake_form(intake["patient"]["mrn"])
    del form["red_flags"]["history_of_cancer"]
    before = await row_counts()
    response = await client.post(f"/v1/intakes/{intake['id']}/amendments", json=form, headers=front_desk)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "red_flags.history_of_cancer"
    assert await row_counts() == before
    assert (await client.get(f"/v1/intakes/{intake['id']}", headers=front_desk)).json() == intake


async def test_unknown_intake_or_version_is_404(
    client: AsyncTestClient[Any], front_desk: dict[str, str]
) -> None:
    intake = (await client.post("/v1/intakes", json=intake_form(), headers=front_desk)).json()
    assert (await client.get(f"/v1/intakes/{uuid.uuid4()}", headers=front_desk)).status_code == 404
    assert (await client.get(f"/v1/intakes/{intake['id']}/versions/2", headers=front_desk)).status_code == 404
    assert (await client.get(f"/v1/intakes/{uuid.uuid4()}/versions", headers=front_desk)).status_code == 404


async def test_intakes_versions_and_patient_changes_carry_the_acting_keys_id(
    client: AsyncTestClient[Any], engine: AsyncEngine, make_key: MakeKey
) -> None:
    first_key, second_key = await make_key("front_desk"), await make_key("front_desk")
    async with engine.connect() as conn:
        ids = {
            row.key_hash: str(row.id)
            for row in await conn.execute(text("SELECT id, key_hash FROM access.api_keys"))
        }
    first_id, second_id = ids[hash_key(first_key)], ids[hash_key(second_key)]
    form = intake_form()
    created = (await client.post("/v1/intakes", json=form, headers=auth(first_key))).json()
    assert created["submitted_by_id"] == first_id and created["amended_by_id"] is None

    form["patient"]["phone"] = "+1 555 0199"
    amended = await client.post(
        f"/v1/intakes/{created['id']}/amendments", json=form, headers=auth(second_key)
    )
    assert amended.status_code == 201, amended.text
    assert (amended.json()["submitted_by_id"], amended.json()["amended_by_id"]) == (first_id, second_id)
    async with engine.connect() as conn:
        change = (
            await conn.execute(
                text("SELECT changed_by_id FROM intake.patient_changes WHERE intake_id = :i"),
                {"i": created["id"]},
            )
        ).one()
    assert str(change.changed_by_id) == second_id
