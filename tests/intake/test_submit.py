"""`POST /v1/intakes`: what is accepted comes back as sent and is published once; what is refused
is a problem naming the field, and leaves no row and no event behind."""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.contracts import vocabulary as words
from tests.conftest import MakeKey, auth
from tests.intake.conftest import TODAY, Counts, events_for, intake_form, unique_mrn
from tests.strategies import RED_FLAG_QUESTIONS as RED_FLAGS

BODY_FIELDS = (
    "patient",
    "complaint",
    "symptoms",
    "conditions",
    "risk_factors",
    "treatments_tried",
    "red_flags",
    "regenerative_procedure",
    "notes",
)


def _every_value_forms() -> list[dict[str, Any]]:
    """Forms that together use every value of every closed vocabulary, and each optional field
    both present and absent."""
    forms = []
    for i, sex in enumerate(words.Sex):
        answers = list(words.RedFlagAnswer)
        form = intake_form(
            symptoms=[s.value for s in words.Symptom],
            conditions=[c.value for c in words.Condition],
            risk_factors=[r.value for r in words.RiskFactor],
            treatments_tried=[
                {"treatment": t.value, "outcome": list(words.TreatmentOutcome)[j % 3].value, "weeks": j}
                for j, t in enumerate(words.Treatment)
            ],
            red_flags={flag: answers[(i + j) % 3].value for j, flag in enumerate(RED_FLAGS)},
            regenerative_procedure={
                "performed_on": (TODAY - datetime.timedelta(days=20)).isoformat(),
                "complications": [c.value for c in words.Complication],
            },
        )
        form["patient"]["sex"] = sex.value
        form["complaint"]["regions"] = [r.value for r in words.Region]
        form["complaint"]["radiates_to"] = [r.value for r in words.RadiatesTo]
        form["complaint"]["trend"] = list(words.Trend)[i % 3].value
        form["complaint"]["intensity"] = (0, 10, 5, 1)[i]
        forms.append(form)
    sparse = intake_form(symptoms=[], conditions=[], risk_factors=[], treatments_tried=[], notes=None)
    sparse["patient"] = {"mrn": None, "given_name": "Bo", "family_name": "Lund", "birth_date": "1990-01-31",
                         "sex": "unknown", "phone": None, "email": None}  # fmt: skip
    sparse["complaint"] = {"regions": ["neck"], "onset_date": None, "duration_weeks": 2600 // 100,
                           "intensity": 3, "trend": "improving", "radiates_to": []}  # fmt: skip
    forms.append(sparse)
    return forms


def _normalised(form: dict[str, Any]) -> dict[str, Any]:
    """The form as the API returns it: optional fields present, with their defaults."""
    out = {field: form.get(field) for field in BODY_FIELDS}
    out["complaint"] = {"onset_date": None, "duration_weeks": None, "radiates_to": [], **form["complaint"]}
    out["treatments_tried"] = [{"weeks": None, **t} for t in form.get("treatments_tried", [])]
    return out


@pytest.mark.parametrize("form", _every_value_forms(), ids=lambda f: f["patient"]["sex"])
async def test_every_vocabulary_value_round_trips(
    client: AsyncTestClient[Any], front_desk: dict[str, str], form: dict[str, Any]
) -> None:
    created = await client.post("/v1/intakes", json=form, headers=front_desk)
    assert created.status_code == 201, created.text
    intake = created.json()
    assert {f: intake[f] for f in BODY_FIELDS} == _normalised(form)
    assert intake["status"] == "submitted" and intake["version"] == 1 and intake["referral"] is None
    assert created.headers["location"] == f"/v1/intakes/{intake['id']}"

    read = await client.get(f"/v1/intakes/{intake['id']}", headers=front_desk)
    assert read.status_code == 200
    assert read.json() == intake


async def test_submission_publishes_intake_submitted_with_the_whole_form(
    client: AsyncTestClient[Any], front_desk: dict[str, str], engine: AsyncEngine, make_key: MakeKey
) -> None:
    key = await make_key("front_desk", name="desk-north")
    form = intake_form()
    intake = (await client.post("/v1/intakes", json=form, headers=auth(key))).json()

    assert intake["submitted_by"] == "desk-north"
    events = await events_for(engine, intake["id"])
    assert [e["type"] for e in events] == ["intake.submitted"]
    data = events[0]["data"]
    assert data["intake_id"] == intake["id"]
    assert data["patient_id"] == intake["patient_id"]
    assert data["intake_version"] == 1
    assert data["intake"] == {f: intake[f] for f in BODY_FIELDS}
    # Minimum necessary: the form and its ids, not who typed it (the intake keeps that).
    assert set(data) == {"intake_id", "patient_id", "intake_version", "submitted_at", "intake"}
    assert "desk-north" not in json.dumps(events[0])


# -- refusals --------------------------------------------------------------------------------------

Change = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Change:
    def change(form: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = form
        for part in parents:
            target = target[part]
        target[last] = value

    return change


def _drop(path: str) -> Change:
    def change(form: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = form
        for part in parents:
            target = target[part]
        del target[last]

    return change


def _both(*changes: Change) -> Change:
    def change(form: dict[str, Any]) -> None:
        for c in changes:
            c(form)

    return change


FUTURE = (TODAY + datetime.timedelta(days=30)).isoformat()
BAD_ENUMS: list[tuple[str, Change, str]] = [
    ("region", _set("complaint.regions", ["hip"]), "complaint.regions[0]"),
    ("trend", _set("complaint.trend", "better"), "complaint.trend"),
    ("radiates_to", _set("complaint.radiates_to", ["left_leg", "tail"]), "complaint.radiates_to[1]"),
    ("symptom", _set("symptoms", ["stiffness", "itching"]), "symptoms[1]"),
    ("condition", _set("conditions", ["gout"]), "conditions[0]"),
    ("risk_factor", _set("risk_factors", ["smoking"]), "risk_factors[0]"),
    ("treatment", _set("treatments_tried", [{"treatment": "reiki", "outcome": "no_relief"}]),
     "treatments_tried[0].treatment"),
    ("outcome", _set("treatments_tried", [{"treatment": "surgery", "outcome": "cured"}]),
     "treatments_tried[0].outcome"),
    ("red_flag_answer", _set("red_flags.saddle_numbness", "maybe"), "red_flags.saddle_numbness"),
    ("complication",
     _set("regenerative_procedure", {"performed_on": "2026-01-02", "complications": ["rash"]}),
     "regenerative_procedure.complications[0]"),
    ("sex", _set("patient.sex", "f"), "patient.sex"),
]  # fmt: skip

BAD_FORMS: list[tuple[str, Change, str]] = [
    *[(f"missing_red_flag_{flag}", _drop(f"red_flags.{flag}"), f"red_flags.{flag}") for flag in RED_FLAGS],
    ("missing_red_flags", _drop("red_flags"), "red_flags"),
    ("red_flag_as_bool", _set("red_flags.limb_weakness", False), "red_flags.limb_weakness"),
    ("intensity_11", _set("complaint.intensity", 11), "complaint.intensity"),
    ("intensity_minus_1", _set("complaint.intensity", -1), "complaint.intensity"),
    ("intensity_as_string", _set("complaint.intensity", "6"), "complaint.intensity"),
    ("intensity_as_float", _set("complaint.intensity", 6.5), "complaint.intensity"),
    ("missing_intensity", _drop("complaint.intensity"), "complaint.intensity"),
    ("future_onset", _set("complaint.onset_date", FUTURE), "complaint.onset_date"),
    ("both_onset_and_duration", _set("complaint.duration_weeks", 4), "complaint.onset_date"),
    ("neither_onset_nor_duration", _drop("complaint.onset_date"), "complaint.onset_date"),
    ("duration_too_long", _both(_drop("complaint.onset_date"), _set("complaint.duration_weeks", 2601)),
     "complaint.duration_weeks"),
    ("onset_not_a_date", _set("complaint.onset_date", "yesterday"), "complaint.onset_date"),
    ("future_birth_date", _set("patient.birth_date", FUTURE), "patient.birth_date"),
    ("future_procedure", _set("regenerative_procedure", {"performed_on": FUTURE}),
     "regenerative_procedure.performed_on"),
    ("no_regions", _set("complaint.regions", []), "complaint.regions"),
    ("regions_not_a_list", _set("complaint.regions", "lower_back"), "complaint.regions"),
    ("missing_given_name", _drop("patient.given_name"), "patient.given_name"),
    ("blank_family_name", _set("patient.family_name", "   "), "patient.family_name"),
    ("patient_not_an_object", _set("patient", "Ana Silva"), "patient"),
    ("missing_complaint", _drop("complaint"), "complaint"),
    ("notes_too_long", _set("notes", "x" * 4001), "notes"),
    ("notes_as_number", _set("notes", 42), "notes"),
    ("nul_in_notes", _set("notes", "a\u0000b"), "notes"),
    ("unknown_top_level_field", _set("referral", "urgent"), "referral"),
    ("unknown_nested_field", _set("complaint.severity", 9), "complaint.severity"),
    ("unknown_red_flag", _set("red_flags.dizziness", "no"), "red_flags.dizziness"),
    *[(f"bad_enum_{name}", change, field) for name, change, field in BAD_ENUMS],
]  # fmt: skip


async def _assert_refused(
    response: Any, status: int, field: str, counts_before: dict[str, int], row_counts: Counts
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert field in [e["field"] for e in problem["errors"]], problem
    assert await row_counts() == counts_before
    return problem


@pytest.mark.parametrize(("change", "field"), [c[1:] for c in BAD_FORMS], ids=[c[0] for c in BAD_FORMS])
async def test_bad_form_is_refused_naming_the_field_and_stores_nothing(
    client: AsyncTestClient[Any], front_desk: dict[str, str], row_counts: Counts, change: Change, field: str
) -> None:
    form = intake_form()
    change(form)
    before = await row_counts()
    response = await client.post(
        "/v1/intakes", json=form, headers={**front_desk, "Idempotency-Key": uuid.uuid4().hex}
    )
    await _assert_refused(response, 422, field, before, row_counts)


@pytest.mark.parametrize("name", [name for name, _, _ in BAD_ENUMS])
async def test_bad_enum_value_lists_the_allowed_values(
    client: AsyncTestClient[Any], front_desk: dict[str, str], name: str
) -> None:
    _, change, field = next(c for c in BAD_ENUMS if c[0] == name)
    form = intake_form()
    change(form)
    problem = (await client.post("/v1/intakes", json=form, headers=front_desk)).json()
    error = next(e for e in problem["errors"] if e["field"] == field)
    assert len(error["allowed"]) >= 3
    assert all(isinstance(value, str) for value in error["allowed"])


RAW_BODIES: list[tuple[str, bytes, int]] = [
    ("truncated_json", b'{"patient": {', 400),
    ("not_json", b"patient=Ana", 400),
    ("empty_body", b"", 422),
    ("json_array", b"[]", 422),
    ("json_null", b"null", 422),
    ("oversize", json.dumps(intake_form(notes="x" * 300_000)).encode(), 413),
]


@pytest.mark.parametrize(("raw", "status"), [r[1:] for r in RAW_BODIES], ids=[r[0] for r in RAW_BODIES])
async def test_unreadable_body_is_refused_naming_the_body_and_stores_nothing(
    client: AsyncTestClient[Any], front_desk: dict[str, str], row_counts: Counts, raw: bytes, status: int
) -> None:
    before = await row_counts()
    response = await client.post(
        "/v1/intakes",
        content=raw,
        headers={**front_desk, "content-type": "application/json", "Idempotency-Key": uuid.uuid4().hex},
    )
    await _assert_refused(response, status, "body", before, row_counts)


async def test_bad_idempotency_key_is_refused(
    client: AsyncTestClient[Any], front_desk: dict[str, str], row_counts: Counts
) -> None:
    before = await row_counts()
    response = await client.post(
        "/v1/intakes", json=intake_form(), headers={**front_desk, "Idempotency-Key": "x" * 256}
    )
    await _assert_refused(response, 422, "Idempotency-Key", before, row_counts)


# -- failures after the insert ----------------------------------------------------------------------

# Two real database failures, each raised only for one MRN: one when the event is inserted (after
# the intake and its version), one at COMMIT itself (a deferred constraint trigger).
FAILURES = {
    "at_publish": (
        "BEFORE INSERT ON queue.events FOR EACH ROW",
        "NEW.payload->'intake'->'patient'->>'mrn'",
    ),
    "at_commit": (
        "AFTER INSERT ON intake.intake_versions DEFERRABLE INITIALLY DEFERRED FOR EACH ROW",
        "NEW.body->'patient'->>'mrn'",
    ),
}


@pytest.mark.parametrize("where", list(FAILURES))
async def test_failure_after_the_intake_insert_leaves_neither_intake_nor_event(
    client: AsyncTestClient[Any],
    front_desk: dict[str, str],
    engine: AsyncEngine,
    row_counts: Counts,
    where: str,
) -> None:
    timing, mrn_expr = FAILURES[where]
    mrn = unique_mrn()
    name = f"fail_{uuid.uuid4().hex[:10]}"
    constraint = "CONSTRAINT " if "DEFERRABLE" in timing else ""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                f"CREATE FUNCTION public.{name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF {mrn_expr} = '{mrn}' THEN RAISE EXCEPTION 'injected failure'; END IF; "
                "RETURN NEW; END $$"
            )
        )
        table = timing.split(" ON ")[1].split(" ")[0]
        await conn.execute(
            text(f"CREATE {constraint}TRIGGER {name} {timing} EXECUTE FUNCTION public.{name}()")
        )
    try:
        before = await row_counts()
        response = await client.post("/v1/intakes", json=intake_form(mrn), headers=front_desk)
        assert response.status_code == 500
        assert response.headers["content-type"].startswith("application/problem+json")
        assert await row_counts() == before
        listed = await client.get("/v1/intakes", params={"mrn": mrn}, headers=front_desk)
        assert listed.json()["items"] == []
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TRIGGER {name} ON {table}"))
            await conn.execute(text(f"DROP FUNCTION public.{name}()"))
    retried = await client.post("/v1/intakes", json=intake_form(mrn), headers=front_desk)
    assert retried.status_code == 201


# -- roles ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "status"), [("front_desk", 201), ("admin", 201), ("clinician", 403)])
async def test_who_may_submit(
    client: AsyncTestClient[Any], make_key: MakeKey, role: str, status: int
) -> None:
    response = await client.post("/v1/intakes", json=intake_form(), headers=auth(await make_key(role)))
    assert response.status_code == status


async def test_specialists_may_neither_submit_nor_read(
    client: AsyncTestClient[Any], front_desk: dict[str, str], make_key: MakeKey
) -> None:
    specialist = auth(await make_key("specialist", destination="pain_management"))
    intake = (await client.post("/v1/intakes", json=intake_form(), headers=front_desk)).json()
    assert (await client.post("/v1/intakes", json=intake_form(), headers=specialist)).status_code == 403
    assert (await client.get(f"/v1/intakes/{intake['id']}", headers=specialist)).status_code == 403
    assert (await client.get("/v1/intakes", headers=specialist)).status_code == 403


async def test_clinicians_read_intakes(
    client: AsyncTestClient[Any], front_desk: dict[str, str], make_key: MakeKey
) -> None:
    clinician = auth(await make_key("clinician"))
    intake = (await client.post("/v1/intakes", json=intake_form(), headers=front_desk)).json()
    read = await client.get(f"/v1/intakes/{intake['id']}", headers=clinician)
    assert read.status_code == 200 and read.json() == intake


async def test_no_key_is_401(client: AsyncTestClient[Any]) -> None:
    assert (await client.post("/v1/intakes", json=intake_form())).status_code == 401
