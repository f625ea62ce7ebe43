"""The API docs work on a clinic network with no way out: every page under `/schema` refers only
to the service itself, and every file it refers to is served."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.settings import Settings
from services.intake.app import create_app as create_intake_app
from services.referral.app import create_app as create_referral_app
from tests.conftest import serve

#: Every place an HTML page names another resource: src=, href=, CSS url(...).
REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)["']?\s*\)""", re.I)
ANY_URL = re.compile(r"""https?://[^\s"'<>)]+""", re.I)
BASE = "http://testserver"


def schema_pages(app: Litestar) -> list[str]:
    """Every GET path under /schema the app serves, but for the static asset folder itself."""
    return sorted(
        route.path
        for route in app.routes
        if route.path.startswith("/schema") and "{" not in route.path and "GET" in route.methods
    )


@pytest.mark.parametrize("factory", [create_intake_app, create_referral_app], ids=["intake", "referral"])
async def test_no_page_under_schema_refers_to_another_host(
    settings: Settings, engine: AsyncEngine, factory
) -> None:
    app = factory(settings, engine)
    pages = schema_pages(app)
    assert {"/schema", "/schema/swagger", "/schema/openapi.json"} <= set(pages), pages
    async with serve(app) as client:
        for page in pages:
            response = await client.get(page)
            assert response.status_code == 200, (page, response.status_code)
            if "html" not in response.headers["content-type"]:
                continue
            html = response.text
            references = [a or b for a, b in REFERENCE.findall(html)]
            if page == "/schema":
                assert any(r.endswith("swagger-ui-bundle.js") for r in references), html[:500]
            outside = [
                r for r in references if urlsplit(urljoin(BASE + page, r)).netloc != urlsplit(BASE).netloc
            ]
            assert outside == [], f"{page} refers to other hosts: {outside}"
            # No absolute URL to another host anywhere in the page either (scripts' own strings).
            hosts = {urlsplit(u).netloc for u in ANY_URL.findall(html)} - {urlsplit(BASE).netloc}
            assert hosts == set(), f"{page} names other hosts: {hosts}"
            for reference in references:
                asset = await client.get(urlsplit(urljoin(BASE + page, reference)).path)
                assert asset.status_code == 200, (page, reference, asset.status_code)
                assert asset.content, (page, reference)
