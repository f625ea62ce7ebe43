"""`GET /fhir/R4/metadata` lists exactly what each service serves: every FHIR route is in the
CapabilityStatement, and everything in it answers as FHIR (a listed read gives an
OperationOutcome for a missing id, a listed search takes each of its parameters)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.settings import Settings
from services.intake.app import create_app as create_intake_app
from services.referral.app import create_app as create_referral_app
from tests.conftest import MakeKey, auth, serve
from tests.fhir.conftest import fhir_json

EXPECTED = {
    "intake": {
        "CodeSystem": {"read"},
        "Patient": {"read", "search-type"},
        "Questionnaire": {"read"},
        "QuestionnaireResponse": {"create", "read", "search-type"},
    },
    "referral": {
        "CodeSystem": {"read"},
        "HealthcareService": {"read"},
        "ServiceRequest": {"read", "search-type"},
        "Task": {"history-instance", "read", "search-type", "vread"},
    },
}
SAMPLE = {"reference": "00000000-0000-0000-0000-000000000000", "token": "x", "date": "ge2020-01-01"}


def fhir_routes(app: Litestar) -> set[tuple[str, str]]:
    """(method, path) of every FHIR route the app registered, read from the app itself."""
    return {
        (method, route.path_format)
        for route in app.routes
        if isinstance(route, HTTPRoute) and route.path_format.startswith("/fhir/R4/")
        for handler in route.route_handlers
        for method in handler.http_methods
        if method not in ("HEAD", "OPTIONS")
    }


def interaction_route(resource_type: str, code: str) -> tuple[str, str]:
    return {
        "read": ("GET", f"/fhir/R4/{resource_type}/{{resource_id}}"),
        "vread": ("GET", f"/fhir/R4/{resource_type}/{{resource_id}}/_history/{{version_id}}"),
        "history-instance": ("GET", f"/fhir/R4/{resource_type}/{{resource_id}}/_history"),
        "search-type": ("GET", f"/fhir/R4/{resource_type}"),
        "create": ("POST", f"/fhir/R4/{resource_type}"),
    }[code]


@pytest.mark.parametrize("service", ["intake", "referral"])
async def test_the_capability_statement_lists_exactly_the_fhir_routes(
    service: str, settings: Settings, engine: AsyncEngine, make_key: MakeKey
) -> None:
    app = (create_intake_app if service == "intake" else create_referral_app)(settings, engine)
    headers = auth(await make_key("admin"))
    async with serve(app) as client:
        statement = fhir_json(await client.get("/fhir/R4/metadata"))
        assert statement["fhirVersion"] == "4.0.1"
        assert "application/fhir+json" in statement["format"]
        resources = statement["rest"][0]["resource"]
        listed = {r["type"]: {i["code"] for i in r["interaction"]} for r in resources}
        assert listed == EXPECTED[service]
        served = {interaction_route(t, code) for t, codes in listed.items() for code in codes}
        assert served | {("GET", "/fhir/R4/metadata")} == fhir_routes(app)
        for resource in resources:
            await _answers_as_listed(client, headers, resource)


async def _answers_as_listed(
    client: httpx.AsyncClient, headers: dict[str, str], resource: dict[str, Any]
) -> None:
    kind = resource["type"]
    codes = {i["code"] for i in resource["interaction"]}
    if "read" in codes:
        missing = await client.get(f"/fhir/R4/{kind}/no-such-{kind.lower()}", headers=headers)
        assert fhir_json(missing, 404)["issue"][0]["code"] == "not-found"
    if "search-type" in codes:
        assert resource["searchParam"]
        for param in resource["searchParam"]:
            assert re.fullmatch(r"_?[a-zA-Z]+", param["name"])
            found = await client.get(
                f"/fhir/R4/{kind}", params={param["name"]: SAMPLE[param["type"]]}, headers=headers
            )
            assert fhir_json(found)["type"] == "searchset", param
        unlisted = await client.get(f"/fhir/R4/{kind}", params={"not-a-parameter": "1"}, headers=headers)
        assert fhir_json(unlisted, 400)["issue"][0]["expression"] == ["not-a-parameter"]
    else:
        assert "searchParam" not in resource


async def test_what_is_not_served_is_an_operation_outcome_too(
    intake: httpx.AsyncClient, front_desk: dict[str, str]
) -> None:
    unknown = await intake.get("/fhir/R4/Observation", headers=front_desk)
    assert fhir_json(unknown, 404)["issue"][0]["code"] == "not-found"
    not_allowed = await intake.delete("/fhir/R4/Patient", headers=front_desk)
    assert fhir_json(not_allowed, 405)["issue"][0]["code"] == "not-supported"
    # The JSON API keeps its problem documents.
    assert (await intake.get("/v1/nothing", headers=front_desk)).headers[
        "content-type"
    ] == "application/problem+json"
