"""Schemathesis against each service's own OpenAPI document: whatever an integration sends,
within or outside the schema, the answer is never a server error."""

from __future__ import annotations

import dataclasses
import os
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from litestar.testing import TestClient
from schemathesis import GenerationMode, checks
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.access.signing import new_secret
from services.common.settings import Settings
from services.intake.app import create_app as create_intake_app
from services.referral.app import create_app as create_referral_app
from tests.conftest import clinic_env, clinic_output

EXAMPLES = int(os.environ.get("CLINIC_FUZZ_EXAMPLES", "10"))
FUZZ = hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def admin_key(database_url: str) -> str:
    return clinic_output("keys", "create", "--role", "admin", "--name", "fuzz", env=clinic_env(database_url))


@pytest.fixture(scope="module")
def intake_schema(settings: Settings, engine: AsyncEngine) -> schemathesis.schemas.BaseSchema:
    configured = dataclasses.replace(settings, inbound_webhook_secret=new_secret())
    return schemathesis.openapi.from_asgi("/schema/openapi.json", create_intake_app(configured, engine))


@pytest.fixture(scope="module")
def referral_schema(settings: Settings, engine: AsyncEngine) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_asgi("/schema/openapi.json", create_referral_app(settings, engine))


def _fuzz(schema: schemathesis.schemas.BaseSchema, key: str) -> int:
    """Every operation of the document, `EXAMPLES` generated requests each; returns how many
    operations were exercised."""
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in GenerationMode:

            @FUZZ
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                case.headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}
                response = case.call()
                case.validate_response(response, checks=(checks.not_a_server_error,))

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to break in an operation without input
    # The auth middleware lets OPTIONS and HEAD through without a key: no guard may crash on them.
    failures = []
    client = TestClient(schema.app)  # no lifespan: the app runs no workers here
    for operation in operations:
        path = re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000001", operation.path)
        for method in ("OPTIONS", "HEAD"):
            status = client.request(method, path).status_code
            if status >= 500:
                failures.append((method, operation.path, status))
    assert failures == []
    return len(operations)


def test_intake_api_never_answers_a_server_error(
    intake_schema: schemathesis.schemas.BaseSchema, admin_key: str
) -> None:
    assert _fuzz(intake_schema, admin_key) >= 8


def test_referral_api_never_answers_a_server_error(
    referral_schema: schemathesis.schemas.BaseSchema, admin_key: str
) -> None:
    assert _fuzz(referral_schema, admin_key) >= 25
