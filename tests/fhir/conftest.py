"""Both services on the test database with their workers, as `clinic up` runs them, and what the
FHIR tests share: validating a resource against the FHIR models, building a questionnaire
response from an intake form, waiting for the referral triage makes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.contracts.intake_body import IntakeBody
from services.common.settings import Settings
from services.intake.app import create_app as create_intake_app
from services.intake.fhir.questionnaire import questionnaire_url, response_items
from services.referral.app import create_app as create_referral_app
from tests.conftest import MakeKey, auth, eventually, serve
from tests.intake.conftest import row_counts  # noqa: F401  (a fixture, shared)

FHIR_JSON = "application/fhir+json"
INTAKE_BASE = "http://intake.test/fhir/R4"
TODAY = dt.datetime.now(dt.UTC).date()


@pytest.fixture(scope="session")
def fhir_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, intake_fhir_base=INTAKE_BASE)


_PUBLICATION = {"draft", "active", "retired", "unknown"}


def _codes(text: str) -> set[str]:
    return set(text.split())


_PRIORITY = {"routine", "urgent", "asap", "stat"}
_ISSUE_TYPES = _codes(
    "invalid structure required value invariant security login unknown expired forbidden suppressed "
    "processing not-supported duplicate multiple-matches not-found deleted too-long code-invalid "
    "extension too-costly business-rule conflict transient lock-error no-store exception timeout "
    "incomplete throttled informational"
)
#: The FHIR R4 (4.0.1) value sets with a *required* binding on the elements the services emit.
#: fhir.resources checks structure, cardinality and datatypes but not these codes, so they are
#: checked here, from the R4 specification.
REQUIRED_CODES: dict[str, dict[str, set[str]]] = {
    "Task": {
        "status": _codes(
            "draft requested received accepted rejected ready cancelled in-progress on-hold failed "
            "completed entered-in-error"
        ),
        "intent": _codes(
            "unknown proposal plan order original-order reflex-order filler-order instance-order option"
        ),
        "priority": _PRIORITY,
    },
    "ServiceRequest": {
        "status": {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"},
        "intent": _codes(
            "proposal plan directive order original-order reflex-order filler-order instance-order option"
        ),
        "priority": _PRIORITY,
    },
    "QuestionnaireResponse": {
        "status": {"in-progress", "completed", "amended", "entered-in-error", "stopped"}
    },
    "Questionnaire": {
        "status": _PUBLICATION,
        "item.type": _codes(
            "group display boolean decimal integer date dateTime time string text url choice open-choice "
            "attachment reference quantity"
        ),
        "item.item.type": _codes("string text integer date choice group"),
    },
    "Patient": {
        "gender": {"male", "female", "other", "unknown"},
        "identifier.use": {"usual", "official", "temp", "secondary", "old"},
        "name.use": {"usual", "official", "temp", "nickname", "anonymous", "old", "maiden"},
        "telecom.system": {"phone", "fax", "email", "pager", "url", "sms", "other"},
    },
    "Bundle": {
        "type": _codes(
            "document message transaction transaction-response batch batch-response history searchset "
            "collection"
        ),
        "entry.search.mode": {"match", "include", "outcome"},
        "entry.request.method": {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"},
    },
    "OperationOutcome": {
        "issue.severity": {"fatal", "error", "warning", "information"},
        "issue.code": _ISSUE_TYPES,
    },
    "CodeSystem": {
        "status": _PUBLICATION,
        "content": {"not-present", "example", "fragment", "complete", "supplement"},
    },
    "CapabilityStatement": {
        "status": _PUBLICATION,
        "kind": {"instance", "capability", "requirements"},
        "fhirVersion": {"4.0.1"},
        "rest.mode": {"client", "server"},
        "rest.resource.interaction.code": _codes(
            "read vread update patch delete history-instance history-type create search-type"
        ),
        "rest.resource.versioning": {"no-version", "versioned", "versioned-update"},
        "rest.resource.searchParam.type": _codes(
            "number date string token reference composite quantity uri special"
        ),
    },
}


def _values(node: Any, path: list[str]) -> list[Any]:
    if isinstance(node, list):
        return [v for item in node for v in _values(item, path)]
    if not path:
        return [node]
    if not isinstance(node, dict) or path[0] not in node:
        return []
    return _values(node[path[0]], path[1:])


def validate(resource: dict[str, Any]) -> None:
    """The resource parses as its FHIR model (fhir.resources, R4B: see the README), its coded
    elements with a required binding hold R4's codes, and the same for what a Bundle carries."""
    model = get_fhir_model_class(resource["resourceType"])
    model.model_validate(resource)
    for path, allowed in REQUIRED_CODES.get(resource["resourceType"], {}).items():
        found = set(_values(resource, path.split(".")))
        assert found <= allowed, (resource["resourceType"], path, found - allowed)
    for entry in resource.get("entry", []) if resource["resourceType"] == "Bundle" else []:
        validate(entry["resource"])


def fhir_json(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = response.json()
    validate(body)
    return body


def questionnaire_response(
    settings: Settings, form: dict[str, Any], identifier: str | None = None
) -> dict[str, Any]:
    """A completed back-pain questionnaire answering `form` (an intake body), as a portal would
    send it."""
    resource: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "questionnaire": questionnaire_url(settings),
        "authored": dt.datetime.now(dt.UTC).isoformat(),
        "item": response_items(settings, msgspec.convert(form, IntakeBody)),
    }
    if identifier is not None:
        resource["identifier"] = {"system": "urn:example:portal", "value": identifier}
    return resource


@pytest.fixture
async def intake(fhir_settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_intake_app(fhir_settings, engine, run_workers=True)) as client:
        yield client


@pytest.fixture
async def referral(fhir_settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_referral_app(fhir_settings, engine, run_workers=True)) as client:
        yield client


@pytest.fixture
async def front_desk(make_key: MakeKey) -> dict[str, str]:
    return auth(await make_key("front_desk"))


@pytest.fixture
async def clinician(make_key: MakeKey) -> dict[str, str]:
    return auth(await make_key("clinician"))


async def submit(
    client: httpx.AsyncClient, headers: dict[str, str], resource: dict[str, Any], **extra: str
) -> httpx.Response:
    return await client.post(
        "/fhir/R4/QuestionnaireResponse",
        content=msgspec.json.encode(resource),
        headers={**headers, "content-type": FHIR_JSON, **extra},
    )


async def service_requests_for(
    client: httpx.AsyncClient, headers: dict[str, str], patient_id: str
) -> list[dict[str, Any]]:
    """The ServiceRequests of a patient, once triage has made one."""

    async def found() -> list[dict[str, Any]] | None:
        response = await client.get(
            "/fhir/R4/ServiceRequest", params={"patient": f"Patient/{patient_id}"}, headers=headers
        )
        bundle = fhir_json(response)
        return [e["resource"] for e in bundle["entry"]] or None

    result: list[dict[str, Any]] = await eventually(found)
    return result
