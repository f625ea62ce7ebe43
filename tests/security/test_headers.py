"""Every response of both services carries the security headers, refusals and errors included,
and the schema is served as documents only (no viewer loading scripts from elsewhere)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.settings import Settings
from services.intake.app import create_app as create_intake
from services.referral.app import create_app as create_referral
from tests.conftest import MakeKey, auth


@pytest.fixture(params=["intake", "referral"])
async def client(request: pytest.FixtureRequest, settings: Settings, engine: AsyncEngine) -> Any:
    app = (
        create_intake(settings, engine)
        if request.param == "intake"
        else create_referral(settings, engine, run_workers=False)
    )
    async with AsyncTestClient(app) as test_client:
        yield test_client


def assert_secured(response: Any) -> None:
    headers = response.headers
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "http" not in csp  # no other origin is allowed


async def test_every_kind_of_response_carries_the_security_headers(
    client: AsyncTestClient[Any], make_key: MakeKey
) -> None:
    admin = auth(await make_key("admin"))
    responses = [
        await client.get("/v1/audit", headers=admin),  # 200 with data
        await client.get("/v1/audit"),  # 401 from the auth middleware
        await client.get("/v1/audit", headers=auth(await make_key("front_desk"))),  # 403
        await client.get("/v1/nowhere", headers=admin),  # 404
        await client.get("/schema/openapi.json"),
        await client.get("/health/live"),
    ]
    assert [r.status_code for r in responses] == [200, 401, 403, 404, 200, 200]
    for response in responses:
        assert_secured(response)


async def test_the_api_docs_load_only_the_services_own_scripts(client: AsyncTestClient[Any]) -> None:
    assert (await client.get("/schema/openapi.yaml")).status_code == 200
    page = await client.get("/schema/swagger")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(r"href='([^']+)'", page.text)
    assert sources and all(s.startswith("/schema/assets/") for s in sources), sources
    assert "http" not in page.headers["content-security-policy"]
    asset = await client.get("/schema/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and asset.headers["x-content-type-options"] == "nosniff"
