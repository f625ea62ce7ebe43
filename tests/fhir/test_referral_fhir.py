"""The referral service's FHIR interface, with both services and their workers running: a FHIR
questionnaire response in at the intake service comes out as a ServiceRequest and a Task at the
referral service, for every public vignette; the Task follows the referral's workflow; the
specialists' scope holds."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from services.common.settings import Settings
from services.vignettes import Vignette, load_vignettes
from tests.conftest import MakeKey, auth, eventually
from tests.fhir.conftest import (
    INTAKE_BASE,
    TODAY,
    fhir_json,
    questionnaire_response,
    service_requests_for,
    submit,
)
from tests.intake.conftest import intake_form, unique_mrn

VIGNETTES = load_vignettes(TODAY)


def vignette(destination: str) -> Vignette:
    return next(v for v in VIGNETTES if v.expect.destination == destination)


Refer = Callable[[dict[str, Any]], Awaitable[tuple[dict[str, Any], dict[str, Any]]]]


@pytest.fixture
def refer(
    intake: httpx.AsyncClient,
    referral: httpx.AsyncClient,
    front_desk: dict[str, str],
    fhir_settings: Settings,
) -> Refer:
    """Submit a form (a fresh MRN) as the front desk's FHIR questionnaire response; return it and the
    ServiceRequest made."""

    async def run(form: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        form = copy.deepcopy(form)
        form["patient"]["mrn"] = unique_mrn()
        response = fhir_json(
            await submit(intake, front_desk, questionnaire_response(fhir_settings, form)), 201
        )
        patient_id = response["subject"]["reference"].split("/")[1]
        (request,) = await service_requests_for(referral, front_desk, patient_id)
        return response, request

    return run


def codes(concept: dict[str, Any]) -> list[str]:
    return [c["code"] for c in concept["coding"]]


async def test_every_vignette_goes_in_as_a_questionnaire_response_and_comes_out_as_service_request_and_task(
    intake: httpx.AsyncClient,
    referral: httpx.AsyncClient,
    front_desk: dict[str, str],
    clinician: dict[str, str],
    refer: Refer,
) -> None:
    rules = fhir_json(await referral.get("/fhir/R4/CodeSystem/triage-rule", headers=front_desk))
    rule_codes = {c["code"] for c in rules["concept"]}
    for case in VIGNETTES:
        response, request = await refer(case.body)
        destination = case.expect.destination.replace("_", "-")
        assert request["intent"] == "order"
        assert request["priority"] == case.expect.priority, case.id
        assert request["performer"][0]["reference"] == f"HealthcareService/{destination}", case.id
        assert request["status"] == ("draft" if destination == "clinician-review" else "active")
        reasons = [code for reason in request["reasonCode"] for code in codes(reason)]
        assert set(case.expect.reason_codes) <= set(reasons), case.id
        assert set(reasons) <= rule_codes
        assert {c["system"] for r in request["reasonCode"] for c in r["coding"]} == {rules["url"]}
        assert (
            request["supportingInfo"][0]["reference"]
            == f"{INTAKE_BASE}/QuestionnaireResponse/{response['id']}"
        )
        assert request["subject"]["reference"] == f"{INTAKE_BASE}/{response['subject']['reference']}"
        assert request["category"][0]["coding"][0]["code"] == "3457005"
        # The QuestionnaireResponse the ServiceRequest points at is there at the intake service.
        fhir_json(await intake.get(f"/fhir/R4/QuestionnaireResponse/{response['id']}", headers=front_desk))
        read = fhir_json(await referral.get(f"/fhir/R4/ServiceRequest/{request['id']}", headers=clinician))
        assert read == request
        task = fhir_json(await referral.get(f"/fhir/R4/Task/{request['id']}", headers=clinician))
        assert task["focus"]["reference"] == f"ServiceRequest/{request['id']}"
        assert task["owner"] == request["performer"][0]
        assert task["for"] == request["subject"]
        assert task["status"] == ("draft" if destination == "clinician-review" else "requested")
        assert codes(task["businessStatus"]) == [
            "needs_review" if destination == "clinician-review" else "requested"
        ]
        fhir_json(await referral.get(f"/fhir/R4/HealthcareService/{destination}", headers=clinician))
        fhir_json(await referral.get(f"/fhir/R4/Task/{request['id']}/_history", headers=clinician))


async def test_the_task_follows_the_referral_with_its_history_as_versions(
    referral: httpx.AsyncClient, front_desk: dict[str, str], refer: Refer, make_key: MakeKey
) -> None:
    _, request = await refer(vignette("pain_management").body)
    specialist = auth(await make_key("specialist", destination="pain_management"))
    actions = f"/v1/referrals/{request['id']}"
    appointment = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).replace(microsecond=0)
    assert (await referral.post(f"{actions}/accept", headers=specialist)).status_code == 200
    scheduled = await referral.post(
        f"{actions}/schedule", json={"appointment_at": appointment.isoformat()}, headers=specialist
    )
    assert scheduled.status_code == 200, scheduled.text
    task = fhir_json(await referral.get(f"/fhir/R4/Task/{request['id']}", headers=specialist))
    assert task["status"] == "in-progress"
    assert dt.datetime.fromisoformat(task["executionPeriod"]["start"]) == appointment
    assert task["meta"]["versionId"] == "3"
    assert (await referral.post(f"{actions}/complete", headers=specialist)).status_code == 200
    task = fhir_json(await referral.get(f"/fhir/R4/Task/{request['id']}", headers=specialist))
    assert task["status"] == "completed"
    history = fhir_json(await referral.get(f"/fhir/R4/Task/{request['id']}/_history", headers=specialist))
    assert history["type"] == "history"
    assert [codes(e["resource"]["businessStatus"]) for e in history["entry"]] == [
        ["completed"],
        ["scheduled"],
        ["accepted"],
        ["requested"],
    ]
    assert [e["resource"]["status"] for e in history["entry"]] == [
        "completed",
        "in-progress",
        "accepted",
        "requested",
    ]
    accepted = fhir_json(await referral.get(f"/fhir/R4/Task/{request['id']}/_history/2", headers=specialist))
    assert accepted["status"] == "accepted" and accepted["meta"]["versionId"] == "2"
    assert fhir_json(await referral.get(f"/fhir/R4/Task/{request['id']}/_history/5", headers=specialist), 404)
    done = fhir_json(await referral.get(f"/fhir/R4/ServiceRequest/{request['id']}", headers=specialist))
    assert done["status"] == "completed"
    assert dt.datetime.fromisoformat(done["occurrenceDateTime"]) == appointment


async def test_a_declined_referral_is_a_rejected_task_and_a_revoked_request(
    referral: httpx.AsyncClient, front_desk: dict[str, str], refer: Refer, make_key: MakeKey
) -> None:
    _, request = await refer(vignette("regenerative_medicine").body)
    specialist = auth(await make_key("specialist", destination="regenerative_medicine"))
    declined = await referral.post(
        f"/v1/referrals/{request['id']}/decline", json={"reason": "no capacity"}, headers=specialist
    )
    assert declined.status_code == 200, declined.text
    task = fhir_json(await referral.get(f"/fhir/R4/Task/{request['id']}", headers=specialist))
    assert task["status"] == "rejected"
    assert "no capacity" in task["statusReason"]["text"]
    revoked = fhir_json(await referral.get(f"/fhir/R4/ServiceRequest/{request['id']}", headers=specialist))
    assert revoked["status"] == "revoked"
    found = fhir_json(
        await referral.get(
            "/fhir/R4/Task",
            params={"status": "rejected", "patient": revoked["subject"]["reference"]},
            headers=front_desk,
        )
    )
    assert [e["resource"]["id"] for e in found["entry"]] == [request["id"]]
    none = fhir_json(
        await referral.get(
            "/fhir/R4/ServiceRequest",
            params={"status": "active", "patient": revoked["subject"]["reference"]},
            headers=front_desk,
        )
    )
    assert none["entry"] == []


async def test_searches_filter_by_status_performer_and_last_updated_and_page(
    intake: httpx.AsyncClient,
    referral: httpx.AsyncClient,
    front_desk: dict[str, str],
    fhir_settings: Settings,
) -> None:
    form = intake_form()
    first = fhir_json(await submit(intake, front_desk, questionnaire_response(fhir_settings, form)), 201)
    second_form = copy.deepcopy(vignette("urgent_care").body)
    second_form["patient"] = form["patient"]
    fhir_json(await submit(intake, front_desk, questionnaire_response(fhir_settings, second_form)), 201)
    patient = first["subject"]["reference"]

    async def found(kind: str, **params: Any) -> list[dict[str, Any]]:
        """What the front desk's search of `kind` for the patient finds, by `params` too."""
        bundle = fhir_json(
            await referral.get(f"/fhir/R4/{kind}", params={"patient": patient, **params}, headers=front_desk)
        )
        return [e["resource"] for e in bundle["entry"]]

    async def both() -> list[dict[str, Any]] | None:
        requests = await found("ServiceRequest")
        return requests if len(requests) == 2 else None

    requests = await eventually(both)
    # Most urgent first: the urgent-care referral leads.
    assert requests[0]["performer"][0]["reference"] == "HealthcareService/urgent-care"
    by_performer = await found("ServiceRequest", performer="HealthcareService/urgent-care")
    assert [r["id"] for r in by_performer] == [requests[0]["id"]]
    by_owner = await found("Task", owner=requests[1]["performer"][0]["reference"])
    assert [r["id"] for r in by_owner] == [requests[1]["id"]]
    page = fhir_json(
        await referral.get("/fhir/R4/Task", params={"patient": patient, "_count": 1}, headers=front_desk)
    )
    next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    rest = fhir_json(await referral.get(next_url, headers=front_desk))
    assert [e["resource"]["id"] for e in page["entry"] + rest["entry"]] == [r["id"] for r in requests]
    latest = max(r["meta"]["lastUpdated"] for r in requests)
    assert await found("ServiceRequest", _lastUpdated=f"gt{latest}") == []
    assert len(await found("ServiceRequest", _lastUpdated=f"le{latest}")) == 2
    bad = await referral.get("/fhir/R4/ServiceRequest", params={"_lastUpdated": "xx2026"}, headers=front_desk)
    assert fhir_json(bad, 400)["issue"][0]["expression"] == ["_lastUpdated"]
    assert fhir_json(await referral.get("/fhir/R4/Task", params={"_count": 0}, headers=front_desk), 400)


async def test_a_specialist_sees_only_its_destinations_referrals(
    referral: httpx.AsyncClient, front_desk: dict[str, str], refer: Refer, make_key: MakeKey
) -> None:
    _, request = await refer(vignette("pain_management").body)
    own = auth(await make_key("specialist", destination="pain_management"))
    other = auth(await make_key("specialist", destination="urgent_care"))
    for path in (
        f"/fhir/R4/ServiceRequest/{request['id']}",
        f"/fhir/R4/Task/{request['id']}",
        f"/fhir/R4/Task/{request['id']}/_history",
        f"/fhir/R4/Task/{request['id']}/_history/1",
    ):
        fhir_json(await referral.get(path, headers=own))
        fhir_json(await referral.get(path, headers=front_desk))
        assert fhir_json(await referral.get(path, headers=other), 404)["issue"][0]["code"] == "not-found"
        assert fhir_json(await referral.get(path), 401)["issue"][0]["code"] == "login"
    for kind, performer in (("ServiceRequest", "performer"), ("Task", "owner")):
        refused = await referral.get(
            f"/fhir/R4/{kind}", params={performer: "HealthcareService/pain-management"}, headers=other
        )
        assert fhir_json(refused, 403)["issue"][0]["code"] == "forbidden"
        mine = fhir_json(await referral.get(f"/fhir/R4/{kind}", params={"_count": 100}, headers=other))
        assert request["id"] not in {e["resource"]["id"] for e in mine["entry"]}
        owners = {
            e["resource"].get("owner", (e["resource"].get("performer") or [{}])[0]).get("reference")
            for e in mine["entry"]
        }
        assert owners <= {"HealthcareService/urgent-care"}
    # The service's definitions need a key of any role.
    fhir_json(await referral.get("/fhir/R4/CodeSystem/referral-status", headers=other))
    fhir_json(await referral.get("/fhir/R4/HealthcareService/pain-management"), 401)
    assert fhir_json(await referral.get("/fhir/R4/HealthcareService/nowhere", headers=other), 404)
