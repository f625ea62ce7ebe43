"""Input that used to reach a 500: JSON nested 1000 deep, a deeply nested cursor, a NUL in a query
parameter or a body. Each is now a 422 problem naming the field, and nothing is stored."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.http.input_limits import json_depth_exceeds
from services.common.settings import Settings
from services.intake.app import create_app as create_intake
from services.referral.app import create_app as create_referral
from tests.conftest import MakeKey, auth
from tests.intake.conftest import Counts, intake_form, row_counts  # noqa: F401


@pytest.fixture
async def intake(settings: Settings, engine: AsyncEngine) -> Any:
    async with AsyncTestClient(create_intake(settings, engine)) as client:
        yield client


@pytest.fixture
async def referral(settings: Settings, engine: AsyncEngine) -> Any:
    async with AsyncTestClient(create_referral(settings, engine, run_workers=False)) as client:
        yield client


def fields(response: Any) -> list[str]:
    return [e["field"] for e in response.json()["errors"]]


PostIntake = Callable[..., Awaitable[Any]]


@pytest.fixture
async def post_storing_nothing(
    intake: AsyncTestClient[Any],
    make_key: MakeKey,
    row_counts: Counts,  # noqa: F811
) -> PostIntake:
    """`POST /v1/intakes` as the front desk (keywords as `AsyncTestClient.post` takes them),
    checking that nothing was stored; the response."""
    key = auth(await make_key("front_desk"))

    async def post(*, headers: dict[str, str] | None = None, **request: Any) -> Any:
        before = await row_counts()
        response = await intake.post("/v1/intakes", headers={**key, **(headers or {})}, **request)
        assert await row_counts() == before
        return response

    return post


async def test_json_nested_1000_deep_is_a_422_naming_the_body(post_storing_nothing: PostIntake) -> None:
    deep = "[" * 1000 + "]" * 1000
    response = await post_storing_nothing(content=deep, headers={"content-type": "application/json"})
    assert response.status_code == 422 and fields(response) == ["body"]
    form = intake_form()
    form["notes"] = {"a": json.loads("[" * 40 + "]" * 40)}
    response = await post_storing_nothing(json=form)
    assert response.status_code == 422 and fields(response) == ["body"]


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert not json_depth_exceeds(json.dumps({"note": "[" * 100, "x": [[1]]}).encode())
    assert not json_depth_exceeds(b'{"a": "\\\\", "b": [[]]}', limit=3)
    assert not json_depth_exceeds(b'{"a": "\\"[", "b": [[]]}', limit=3)
    assert json_depth_exceeds(b'{"a": "\\\\", "b": [[[]]]}', limit=3)


@pytest.mark.parametrize("path", ["/v1/referrals", "/v1/follow-ups"])
async def test_a_deeply_nested_cursor_is_a_422_naming_cursor(
    referral: AsyncTestClient[Any], make_key: MakeKey, path: str
) -> None:
    cursor = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("=")
    response = await referral.get(path, params={"cursor": cursor}, headers=auth(await make_key("admin")))
    assert response.status_code == 422 and fields(response) == ["cursor"]


async def test_a_nul_in_a_query_parameter_is_a_422_naming_it(
    intake: AsyncTestClient[Any], referral: AsyncTestClient[Any], make_key: MakeKey
) -> None:
    admin = auth(await make_key("admin"))
    response = await intake.get("/v1/intakes?mrn=%00", headers=admin)
    assert response.status_code == 422 and fields(response) == ["mrn"]
    assert response.headers["content-type"].startswith("application/problem+json")
    response = await referral.get("/v1/audit?actor=a%00b", headers=admin)
    assert response.status_code == 422 and fields(response) == ["actor"]


async def test_a_nul_in_a_body_string_is_a_422_and_stores_nothing(post_storing_nothing: PostIntake) -> None:
    form = intake_form()
    form["patient"]["family_name"] = "Doe\u0000"
    form["notes"] = "\u0000"
    response = await post_storing_nothing(json=form)
    assert response.status_code == 422 and sorted(fields(response)) == ["notes", "patient.family_name"]


async def test_arrays_are_bounded_and_each_bound_is_in_the_openapi_schema(
    intake: AsyncTestClient[Any], post_storing_nothing: PostIntake
) -> None:
    form = intake_form()
    form["symptoms"] = [form["symptoms"][0] if form.get("symptoms") else "night_pain"] * 20_000
    response = await post_storing_nothing(json=form)
    assert response.status_code == 422 and fields(response) == ["symptoms"]
    schemas = (await intake.get("/schema/openapi.json")).json()["components"]["schemas"]
    for schema in ("IntakeBody", "Complaint", "RegenerativeProcedure"):
        arrays = {k: v for k, v in schemas[schema]["properties"].items() if v.get("type") == "array"}
        assert arrays and all(isinstance(v.get("maxItems"), int) for v in arrays.values()), (schema, arrays)
