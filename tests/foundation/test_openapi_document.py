"""Each service's OpenAPI document is one a client can be generated from: stable camelCase
operation ids, human summaries and descriptions, one typed Problem for every error, no response
that cannot happen, enum filters that list their values, and (referral service) every outgoing
webhook event with the schema of its body."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.contracts.events import PAYLOAD_TYPES
from services.common.settings import Settings
from services.intake.app import create_app as create_intake_app
from services.referral.app import create_app as create_referral_app
from services.referral.webhooks.consumer import THIN_FIELDS
from services.referral.webhooks.schemas import EventType
from tests.conftest import serve

CAMEL = re.compile(r"^[a-z][a-z]+(?:[A-Z][a-z]+)*$")
PROBLEM = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
async def documents(settings: Settings, engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    found = {}
    for name, factory in (("intake", create_intake_app), ("referral", create_referral_app)):
        async with serve(factory(settings, engine)) as client:
            found[name] = (await client.get("/schema/openapi.json")).json()
    return found


def operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", item[method])
        for path, item in document["paths"].items()
        for method in METHODS
        if method in item
    ]


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


@pytest.mark.parametrize("service", ["intake", "referral"])
def test_every_operation_has_a_camel_case_id_unique_in_its_document(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    ids = [op.get("operationId", "") for _, op in operations(documents[service])]
    assert [i for i in ids if not CAMEL.match(i)] == []
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("service", "ids"),
    [
        ("intake", {"submitIntake", "getIntake", "listIntakes", "amendIntake", "receiveIntakeForm"}),
        (
            "referral",
            {"acceptReferral", "declineReferral", "listReferrals", "getReferral", "previewTriage"},
        ),
    ],
)
def test_the_ids_integrators_code_against_are_there(
    documents: dict[str, dict[str, Any]], service: str, ids: set[str]
) -> None:
    """Renaming one breaks every generated client: these ids are part of the contract."""
    found = {op["operationId"] for _, op in operations(documents[service])}
    assert ids <= found


@pytest.mark.parametrize("service", ["intake", "referral"])
def test_every_operation_has_a_human_summary_and_a_description(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    missing = [
        name
        for name, op in operations(documents[service])
        if not op.get("description") or not op.get("summary") or " " not in op["summary"]
    ]
    assert missing == []


@pytest.mark.parametrize("service", ["intake", "referral"])
def test_every_error_response_is_the_problem_schema_with_an_example(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    document = documents[service]
    wrong = []
    for name, op in operations(document):
        for status, response in op["responses"].items():
            if int(status) < 400:
                continue
            content = response.get("content", {})
            media = content.get(PROBLEM, {})
            example = next(iter(media.get("examples", {}).values()), {}).get("value", {})
            if (
                list(content) != [PROBLEM]
                or media["schema"] != {"$ref": PROBLEM_REF}
                or example.get("status") != int(status)
            ):
                wrong.append((name, status))
    assert wrong == []
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance", "errors"} <= set(problem["properties"])
    field_problem = resolve(document, problem["properties"]["errors"]["oneOf"][0]["items"])
    assert {"field", "message", "allowed"} <= set(field_problem["properties"])
    assert problem["examples"][0]["errors"][0]["field"]


@pytest.mark.parametrize("service", ["intake", "referral"])
def test_no_operation_declares_a_400_json_body_and_each_body_declares_its_problems(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    for name, op in operations(documents[service]):
        assert "application/json" not in op["responses"].get("400", {}).get("content", {}), name
        if "requestBody" in op:
            assert {"400", "413", "422"} <= set(op["responses"]), name
        if op.get("security") != [{}]:
            assert "401" in op["responses"], name


@pytest.mark.parametrize("service", ["intake", "referral"])
def test_closed_set_filters_list_their_values_and_limits_are_bounded(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    document = documents[service]
    closed = {"status", "destination", "priority", "event_type"}
    for name, op in operations(document):
        for parameter in op.get("parameters", []):
            if parameter["in"] != "query":
                continue
            schema = parameter["schema"]
            if parameter["name"] == "limit":
                assert (schema.get("minimum"), schema.get("maximum")) == (1, 200), name
            if parameter["name"] in closed:
                options = [resolve(document, s) for s in schema.get("oneOf", [schema])]
                options = [resolve(document, s.get("items", s)) for s in options]
                assert any(s.get("enum") for s in options), (name, parameter["name"])


def test_every_outgoing_event_is_documented_as_a_webhook_with_its_body(
    documents: dict[str, dict[str, Any]],
) -> None:
    document = documents["referral"]
    webhooks = document["webhooks"]
    sent = {payload.TYPE: fields for payload, fields in THIN_FIELDS.items()}
    assert set(webhooks) == set(sent) == {e.value for e in EventType}
    assert set(sent) <= set(PAYLOAD_TYPES)
    for event_type, fields in sent.items():
        operation = webhooks[event_type]["post"]
        assert CAMEL.match(operation["operationId"]) and operation["summary"] and operation["description"]
        assert {"webhook-id", "webhook-timestamp", "webhook-signature"} == {
            p["name"] for p in operation["parameters"]
        }
        body = resolve(document, operation["requestBody"]["content"]["application/json"]["schema"])
        assert body["properties"]["type"]["enum"] == [event_type]
        data = resolve(document, body["properties"]["data"])
        assert list(data["properties"]) == list(fields)
    assert "webhooks" not in documents["intake"]
