"""The intake service's FHIR interface: the Questionnaire generated from the form, patients and
questionnaire responses read and searched, and completed questionnaires coming in."""

from __future__ import annotations

import copy
import enum
import typing
import uuid
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.contracts import intake_body
from services.common.contracts.intake_body import IntakeBody, RedFlagAnswer, RedFlags
from services.common.settings import Settings
from services.vignettes import load_vignettes
from tests.conftest import MakeKey, auth
from tests.fhir.conftest import TODAY, fhir_json, questionnaire_response, submit
from tests.intake.conftest import STORED_TABLES, intake_form, unique_mrn

pytestmark = pytest.mark.usefixtures("intake")


def field_paths(struct: type, prefix: str = "") -> dict[str, Any]:
    """Every field of the form by dotted path, with its type (walked from the type hints, not
    from the code under test)."""
    found: dict[str, Any] = {}
    for name, hint in typing.get_type_hints(struct, include_extras=True).items():
        path = f"{prefix}.{name}" if prefix else name
        found[path] = hint
        for arg in [
            hint,
            *typing.get_args(hint),
            *(a for h in typing.get_args(hint) for a in typing.get_args(h)),
        ]:
            if isinstance(arg, type) and issubclass(arg, msgspec.Struct):
                found.update(field_paths(arg, path))
    return found


def items_by_link(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {}
    for item in items:
        found[item["linkId"]] = item
        found.update(items_by_link(item.get("item", [])))
    return found


def enum_of(hint: Any) -> type[enum.Enum] | None:
    for arg in [
        hint,
        *typing.get_args(hint),
        *(a for h in typing.get_args(hint) for a in typing.get_args(h)),
    ]:
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return arg
    return None


async def test_the_questionnaire_has_one_item_per_field_with_the_forms_vocabularies(
    intake: httpx.AsyncClient, front_desk: dict[str, str]
) -> None:
    questionnaire = fhir_json(await intake.get("/fhir/R4/Questionnaire/back-pain-intake", headers=front_desk))
    assert questionnaire["code"][0] == {
        "system": "http://snomed.info/sct",
        "code": "279039007",
        "display": "Low back pain",
    }
    items = items_by_link(questionnaire["item"])
    paths = field_paths(IntakeBody)
    assert set(items) == set(paths)
    for path, hint in paths.items():
        vocabulary = enum_of(hint)
        if vocabulary is None:
            assert "answerOption" not in items[path]
            continue
        assert items[path]["type"] == "choice"
        codes = [o["valueCoding"]["code"] for o in items[path]["answerOption"]]
        assert codes == [m.value for m in vocabulary], path
    for flag in RedFlags.__struct_fields__:
        item = items[f"red_flags.{flag}"]
        assert item["required"] is True
        assert [o["valueCoding"]["code"] for o in item["answerOption"]] == ["yes", "no", "unsure"]
    assert items["red_flags"]["required"] is True
    assert items["treatments_tried"]["type"] == "group" and items["treatments_tried"]["repeats"] is True
    assert items["complaint.regions"]["repeats"] is True and items["complaint.regions"]["required"] is True
    assert items["notes"]["required"] is False
    assert questionnaire["version"]
    # Sex is FHIR's own administrative gender; the others are the clinic's CodeSystems, served.
    assert (
        items["patient.sex"]["answerOption"][0]["valueCoding"]["system"]
        == "http://hl7.org/fhir/administrative-gender"
    )
    system = items["complaint.trend"]["answerOption"][0]["valueCoding"]["system"]
    code_system = fhir_json(
        await intake.get(f"/fhir/R4/CodeSystem/{system.rsplit('/', 1)[1]}", headers=front_desk)
    )
    assert code_system["url"] == system
    assert [c["code"] for c in code_system["concept"]] == [m.value for m in intake_body.Trend]
    red = fhir_json(await intake.get("/fhir/R4/CodeSystem/red-flag-answer", headers=front_desk))
    assert [c["code"] for c in red["concept"]] == [m.value for m in RedFlagAnswer]
    missing = await intake.get("/fhir/R4/CodeSystem/nothing-here", headers=front_desk)
    assert fhir_json(missing, 404)["issue"][0]["code"] == "not-found"


async def test_the_canonical_base_is_configurable(
    settings: Settings, engine: AsyncEngine, make_key: MakeKey
) -> None:
    import dataclasses

    from services.intake.app import create_app
    from tests.conftest import serve

    custom = dataclasses.replace(settings, fhir_canonical_base="https://fhir.hospital.example/clinic")
    async with serve(create_app(custom, engine)) as client:
        body = fhir_json(
            await client.get(
                "/fhir/R4/Questionnaire/back-pain-intake", headers=auth(await make_key("front_desk"))
            )
        )
    assert body["url"] == "https://fhir.hospital.example/clinic/Questionnaire/back-pain-intake"
    assert body["item"][1]["item"][0]["answerOption"][0]["valueCoding"]["system"].startswith(
        "https://fhir.hospital.example/clinic/CodeSystem/"
    )


@pytest.mark.parametrize("ruleset", ["v1", "v2"])
async def test_every_vignette_comes_in_as_a_response_and_reads_back_as_patient_and_response(
    intake: httpx.AsyncClient, front_desk: dict[str, str], fhir_settings: Settings, ruleset: str
) -> None:
    for vignette in load_vignettes(TODAY, ruleset=ruleset):
        form = copy.deepcopy(vignette.body)
        form["patient"]["mrn"] = unique_mrn()
        created = await submit(intake, front_desk, questionnaire_response(fhir_settings, form))
        response = fhir_json(created, 201)
        assert created.headers["location"].endswith(f"/fhir/R4/QuestionnaireResponse/{response['id']}")
        assert response["status"] == "completed"
        assert response["questionnaire"].startswith(
            f"{fhir_settings.fhir_canonical_base}/Questionnaire/back-pain-intake|"
        )
        assert response["author"]["display"]
        read = fhir_json(
            await intake.get(f"/fhir/R4/QuestionnaireResponse/{response['id']}", headers=front_desk)
        )
        assert read == response
        patient = fhir_json(
            await intake.get(f"/fhir/R4/{response['subject']['reference']}", headers=front_desk)
        )
        assert patient["identifier"][0]["value"] == form["patient"]["mrn"]
        assert patient["birthDate"] == form["patient"]["birth_date"]
        # The intake the JSON API shows is the form the questionnaire answered.
        intake_id = response["id"].rsplit("-", 1)[0]
        stored = (await intake.get(f"/v1/intakes/{intake_id}", headers=front_desk)).json()
        shown = msgspec.convert(
            {k: v for k, v in stored.items() if k in IntakeBody.__struct_fields__}, IntakeBody
        )
        assert shown == msgspec.convert(form, IntakeBody), vignette.id


async def test_an_amendment_is_a_second_response_and_searches_find_both(
    intake: httpx.AsyncClient, front_desk: dict[str, str], fhir_settings: Settings
) -> None:
    form = intake_form()
    first = fhir_json(await submit(intake, front_desk, questionnaire_response(fhir_settings, form)), 201)
    intake_id = first["id"].rsplit("-", 1)[0]
    form["complaint"]["intensity"] = 9
    amended = await intake.post(f"/v1/intakes/{intake_id}/amendments", json=form, headers=front_desk)
    assert amended.status_code == 201, amended.text
    second = fhir_json(await intake.get(f"/fhir/R4/QuestionnaireResponse/{intake_id}-2", headers=front_desk))
    assert second["status"] == "amended"
    assert {"linkId": "complaint.intensity", "text": "Intensity", "answer": [{"valueInteger": 9}]} in next(
        i for i in second["item"] if i["linkId"] == "complaint"
    )["item"]
    patient = first["subject"]["reference"]
    bundle = fhir_json(
        await intake.get("/fhir/R4/QuestionnaireResponse", params={"patient": patient}, headers=front_desk)
    )
    assert bundle["type"] == "searchset"
    assert [e["resource"]["id"] for e in bundle["entry"]] == [f"{intake_id}-2", f"{intake_id}-1"]
    # One per page, with a next link until the end.
    page = fhir_json(
        await intake.get(
            "/fhir/R4/QuestionnaireResponse", params={"subject": patient, "_count": 1}, headers=front_desk
        )
    )
    assert [e["resource"]["id"] for e in page["entry"]] == [f"{intake_id}-2"]
    next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    page = fhir_json(await intake.get(next_url, headers=front_desk))
    assert [e["resource"]["id"] for e in page["entry"]] == [f"{intake_id}-1"]
    assert [link["relation"] for link in page["link"]] == ["self"]
    # _lastUpdated: after the amendment, nothing; from the first submission on, both.
    later = fhir_json(
        await intake.get(
            "/fhir/R4/QuestionnaireResponse",
            params={"patient": patient, "_lastUpdated": f"gt{second['authored']}"},
            headers=front_desk,
        )
    )
    assert later["entry"] == []
    since = fhir_json(
        await intake.get(
            "/fhir/R4/QuestionnaireResponse",
            params={"patient": patient, "_lastUpdated": f"ge{first['authored']}"},
            headers=front_desk,
        )
    )
    assert len(since["entry"]) == 2


async def test_patients_are_found_by_mrn(
    intake: httpx.AsyncClient, front_desk: dict[str, str], fhir_settings: Settings
) -> None:
    form = intake_form()
    response = fhir_json(await submit(intake, front_desk, questionnaire_response(fhir_settings, form)), 201)
    mrn = form["patient"]["mrn"]
    system = f"{fhir_settings.fhir_canonical_base}/identifier/mrn"
    for value in (mrn, f"{system}|{mrn}"):
        bundle = fhir_json(
            await intake.get("/fhir/R4/Patient", params={"identifier": value}, headers=front_desk)
        )
        assert [e["resource"]["id"] for e in bundle["entry"]] == [
            response["subject"]["reference"].split("/")[1]
        ]
        assert bundle["entry"][0]["fullUrl"].endswith(response["subject"]["reference"])
    other = fhir_json(
        await intake.get("/fhir/R4/Patient", params={"identifier": f"urn:other|{mrn}"}, headers=front_desk)
    )
    assert other["entry"] == []
    unknown = await intake.get("/fhir/R4/Patient", params={"name": "Silva"}, headers=front_desk)
    assert fhir_json(unknown, 400)["issue"][0]["expression"] == ["name"]


async def test_a_resent_response_creates_one_intake(
    intake: httpx.AsyncClient, front_desk: dict[str, str], fhir_settings: Settings, row_counts: Any
) -> None:
    identifier = f"portal-{uuid.uuid4().hex}"
    resource = questionnaire_response(fhir_settings, intake_form(), identifier)
    first = fhir_json(await submit(intake, front_desk, resource), 201)
    assert first["identifier"] == {"system": "urn:example:portal", "value": identifier}
    before = await row_counts()
    again = fhir_json(await submit(intake, front_desk, resource), 200)
    assert again["id"] == first["id"]
    # If-None-Exist names the same identifier: the body is not even a new intake.
    other_body = questionnaire_response(fhir_settings, intake_form())
    conditional = await submit(
        intake, front_desk, other_body, **{"If-None-Exist": f"identifier=urn:example:portal|{identifier}"}
    )
    assert fhir_json(conditional, 200)["id"] == first["id"]
    assert await row_counts() == before
    found = fhir_json(
        await intake.get(
            "/fhir/R4/QuestionnaireResponse",
            params={"identifier": f"urn:example:portal|{identifier}"},
            headers=front_desk,
        )
    )
    assert [e["resource"]["id"] for e in found["entry"]] == [first["id"]]
    for value in (identifier, f"urn:other|{identifier}"):
        any_system = await intake.get(
            "/fhir/R4/QuestionnaireResponse", params={"identifier": value}, headers=front_desk
        )
        expected = [first["id"]] if "|" not in value else []
        assert [e["resource"]["id"] for e in fhir_json(any_system)["entry"]] == expected


def _answers(resource: dict[str, Any], link_id: str, answer: list[dict[str, Any]] | None) -> dict[str, Any]:
    """A copy of `resource` with the item `link_id` answered so (None: the item removed)."""
    resource = copy.deepcopy(resource)

    def walk(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = []
        for item in items:
            if item["linkId"] == link_id:
                if answer is None:
                    continue
                item["answer"] = answer
            if "item" in item:
                item["item"] = walk(item["item"])
            kept.append(item)
        return kept

    resource["item"] = walk(resource["item"])
    return resource


@pytest.mark.parametrize(
    ("link_id", "answer", "code"),
    [
        ("complaint.intensity", [{"valueInteger": 11}], "invalid"),
        ("complaint.intensity", [{"valueString": "6"}], "invalid"),
        ("complaint.trend", [{"valueCoding": {"code": "sideways"}}], "invalid"),
        ("red_flags.saddle_numbness", None, "required"),
        ("patient.birth_date", [{"valueDate": "2999-01-01"}], "invalid"),
        ("complaint.intensity", [{"valueInteger": 3}, {"valueInteger": 4}], "structure"),
        ("complaint.trend", [{"valueCoding": {"system": "urn:other", "code": "stable"}}], "code-invalid"),
    ],
)
async def test_a_bad_answer_is_an_operation_outcome_naming_its_link_id_and_nothing_is_stored(
    intake: httpx.AsyncClient,
    front_desk: dict[str, str],
    fhir_settings: Settings,
    row_counts: Any,
    link_id: str,
    answer: list[dict[str, Any]] | None,
    code: str,
) -> None:
    before = await row_counts()
    resource = _answers(questionnaire_response(fhir_settings, intake_form()), link_id, answer)
    outcome = fhir_json(await submit(intake, front_desk, resource), 422)
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["code"] == code
    assert issue["diagnostics"].startswith(f"{link_id}:")
    assert f"linkId='{link_id}'" in issue["expression"][0]
    assert await row_counts() == before
    assert set(before) == set(STORED_TABLES)


async def test_an_unknown_item_a_wrong_questionnaire_and_non_fhir_bodies_are_refused(
    intake: httpx.AsyncClient, front_desk: dict[str, str], fhir_settings: Settings
) -> None:
    good = questionnaire_response(fhir_settings, intake_form())
    unknown = copy.deepcopy(good)
    unknown["item"].append({"linkId": "favourite_colour", "answer": [{"valueString": "blue"}]})
    assert (
        "favourite_colour"
        in fhir_json(await submit(intake, front_desk, unknown), 422)["issue"][0]["diagnostics"]
    )
    other = {**good, "questionnaire": "https://elsewhere.example/Questionnaire/phq-9"}
    assert fhir_json(await submit(intake, front_desk, other), 422)["issue"][0]["expression"] == [
        "QuestionnaireResponse.questionnaire"
    ]
    draft = {**good, "status": "in-progress"}
    assert fhir_json(await submit(intake, front_desk, draft), 422)["issue"][0]["expression"] == [
        "QuestionnaireResponse.status"
    ]
    patient = {"resourceType": "Patient"}
    assert fhir_json(await submit(intake, front_desk, patient), 400)["issue"][0]["code"] == "structure"
    garbage = await intake.post("/fhir/R4/QuestionnaireResponse", content=b"{not json", headers=front_desk)
    assert fhir_json(garbage, 400)["resourceType"] == "OperationOutcome"
    list_items = {**good, "item": "nope"}
    assert fhir_json(await submit(intake, front_desk, list_items), 422)["resourceType"] == "OperationOutcome"


async def test_roles_on_the_intake_fhir_routes(
    intake: httpx.AsyncClient, front_desk: dict[str, str], fhir_settings: Settings, make_key: MakeKey
) -> None:
    created = fhir_json(
        await submit(intake, front_desk, questionnaire_response(fhir_settings, intake_form())), 201
    )
    patient_url = f"/fhir/R4/{created['subject']['reference']}"
    response_url = f"/fhir/R4/QuestionnaireResponse/{created['id']}"
    clinician = auth(await make_key("clinician"))
    specialist = auth(await make_key("specialist", destination="pain_management"))
    for url in (patient_url, response_url, "/fhir/R4/Patient", "/fhir/R4/QuestionnaireResponse"):
        fhir_json(await intake.get(url, headers=clinician))
        assert fhir_json(await intake.get(url, headers=specialist), 403)["issue"][0]["code"] == "forbidden"
        assert fhir_json(await intake.get(url), 401)["issue"][0]["code"] == "login"
        assert (
            fhir_json(await intake.get(url, headers=auth("clk_not_a_key")), 401)["resourceType"]
            == "OperationOutcome"
        )
    resource = questionnaire_response(fhir_settings, intake_form())
    assert fhir_json(await submit(intake, clinician, resource), 403)["issue"][0]["code"] == "forbidden"
    assert fhir_json(await submit(intake, {}, resource), 401)["issue"][0]["code"] == "login"
    # Definitions need a key, any role; the CapabilityStatement is public.
    fhir_json(await intake.get("/fhir/R4/Questionnaire/back-pain-intake", headers=specialist))
    fhir_json(await intake.get("/fhir/R4/Questionnaire/back-pain-intake"), 401)
    fhir_json(await intake.get("/fhir/R4/metadata"))
    missing = await intake.get(f"/fhir/R4/Patient/{uuid.uuid4()}", headers=front_desk)
    assert fhir_json(missing, 404)["issue"][0]["code"] == "not-found"
    assert fhir_json(await intake.get("/fhir/R4/QuestionnaireResponse/not-an-id", headers=front_desk), 404)


async def test_the_readme_example_is_accepted(intake: httpx.AsyncClient, front_desk: dict[str, str]) -> None:
    from tests.conftest import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## FHIR R4") :]
    example = section[
        section.index("```json\n") + len("```json\n") : section.index("\n```", section.index("```json"))
    ]
    example = example.replace("MRN-0042", unique_mrn()).replace("form-0001", f"form-{uuid.uuid4().hex}")
    created = await intake.post(
        "/fhir/R4/QuestionnaireResponse",
        content=example,
        headers={**front_desk, "content-type": "application/fhir+json"},
    )
    assert fhir_json(created, 201)["status"] == "completed"
