"""API.md's names are fixed: every path and method of the contract is served and documented."""

from __future__ import annotations

import re

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.settings import Settings
from services.intake.app import create_app as create_intake_app
from services.referral.app import create_app as create_referral_app
from tests.conftest import serve

INTAKE = {
    ("post", "/v1/intakes"),
    ("get", "/v1/intakes"),
    ("get", "/v1/intakes/{}"),
    ("post", "/v1/intakes/{}/amendments"),
    ("post", "/v1/inbound/intake-forms"),
    ("get", "/v1/events/dead"),
    ("post", "/v1/events/dead/{}/replay"),
}
REFERRAL = {
    ("get", "/v1/referrals"),
    ("get", "/v1/referrals/{}"),
    *{
        ("post", f"/v1/referrals/{{}}/{a}")
        for a in ("accept", "decline", "schedule", "complete", "no-show", "cancel", "resolve")
    },
    ("get", "/v1/triage/rules"),
    ("post", "/v1/triage/preview"),
    ("post", "/v1/webhooks/endpoints"),
    ("get", "/v1/webhooks/endpoints/{}"),
    ("patch", "/v1/webhooks/endpoints/{}"),
    ("delete", "/v1/webhooks/endpoints/{}"),
    ("post", "/v1/webhooks/endpoints/{}/rotate-secret"),
    ("get", "/v1/webhooks/endpoints/{}/deliveries"),
    ("post", "/v1/webhooks/deliveries/{}/retry"),
    ("post", "/v1/webhooks/endpoints/{}/replay"),
    ("get", "/v1/follow-ups"),
    ("post", "/v1/follow-ups/{}/done"),
    ("get", "/v1/reports/referrals"),
    ("get", "/v1/events/dead"),
    ("post", "/v1/events/dead/{}/replay"),
}
PUBLIC = {("get", "/health/live"), ("get", "/health/ready")}


@pytest.mark.parametrize(
    ("factory", "expected"),
    [(create_intake_app, INTAKE), (create_referral_app, REFERRAL)],
    ids=["intake", "referral"],
)
async def test_every_contract_route_is_served_and_documented(
    settings: Settings, engine: AsyncEngine, factory, expected: set[tuple[str, str]]
) -> None:
    async with serve(factory(settings, engine)) as client:
        document = (await client.get("/schema/openapi.json")).json()
    served = {
        (method, re.sub(r"\{[^}]+\}", "{}", path))
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "patch", "put", "delete"}
    }
    assert expected | PUBLIC <= served, sorted((expected | PUBLIC) - served)
    # Protected routes say so; health stays open.
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if (method, path) in PUBLIC:
                assert operation.get("security") == [{}]
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
