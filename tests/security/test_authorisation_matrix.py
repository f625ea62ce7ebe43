"""Done when: every route of both OpenAPI documents is tried with every role, with no key,
a revoked key and an expired key, against the roles table in the README. A route missing from the table (a
new route without a decision) fails here, and so does a route that lets in a role the table
refuses or refuses one it admits."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.access.auth import create_api_key, revoke_api_key
from services.common.settings import Settings
from services.intake.app import create_app as create_intake
from services.referral.app import create_app as create_referral
from tests.conftest import REPO_ROOT, MakeKey, auth

ROLES = ("front_desk", "specialist", "clinician", "admin")
_ROW = re.compile(r"^\|\s*(intake|referral)\s*\|\s*`(GET|POST|PUT|PATCH|DELETE) ([^`]+)`\s*\|(.*)\|\s*$")


def roles_table() -> dict[tuple[str, str, str], dict[str, str]]:
    """The README's roles table: (service, method, path) -> {role: yes | no | public | signed}."""
    table: dict[tuple[str, str, str], dict[str, str]] = {}
    for line in (REPO_ROOT / "README.md").read_text().splitlines():
        if match := _ROW.match(line):
            service, method, path, cells = match.groups()
            values = [c.strip().lower() for c in cells.split("|")]
            table[(service, method, path)] = dict(zip(ROLES, values[: len(ROLES)], strict=True))
    return table


def concrete(path: str, operation: dict[str, Any]) -> str:
    """The path with each parameter filled by a value of its type (an integer or a UUID)."""
    kinds = {
        p["name"]: p.get("schema", {}).get("type")
        for p in operation.get("parameters", [])
        if p.get("in") == "path"
    }

    def value(match: re.Match[str]) -> str:
        return "1" if kinds.get(match.group(1)) == "integer" else str(uuid.uuid4())

    return re.sub(r"\{([^}]+)\}", value, path)


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


async def call(client: AsyncTestClient[Any], method: str, url: str, headers: dict[str, str]) -> int:
    body = {} if method in ("POST", "PUT", "PATCH") else None
    response = await client.request(method, url, json=body, headers=headers)
    return response.status_code


@pytest.mark.parametrize("service", ["intake", "referral"])
async def test_every_route_answers_every_role_as_the_readme_table_says(
    service: str, settings: Settings, engine: AsyncEngine, make_key: MakeKey
) -> None:
    settings = dataclasses.replace(settings, auth_failure_limit=10_000)  # many 401s on purpose
    app = (
        create_intake(settings, engine)
        if service == "intake"
        else create_referral(settings, engine, run_workers=False)
    )
    table = roles_table()
    keys = {
        role: auth(await make_key(role, destination="pain_management" if role == "specialist" else None))
        for role in ROLES
    }
    revoked_name = f"revoked-{uuid.uuid4().hex[:6]}"
    revoked = auth(await make_key("admin", name=revoked_name))
    async with AsyncSession(engine) as session:
        await revoke_api_key(session, revoked_name)
        past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        expired_key, _ = await create_api_key(
            session, role="admin", name=f"expired-{uuid.uuid4().hex[:6]}", expires_at=past
        )
        await session.commit()
    expired = auth(expired_key)

    wrong: list[str] = []
    async with AsyncTestClient(app) as client:
        document = (await client.get("/schema/openapi.json")).json()
        for method, path, operation in operations(document):
            url = concrete(path, operation)
            decision = table.get((service, method, path))
            if decision is None:
                wrong.append(f"{service} {method} {path}: not in the README's roles table")
                continue
            if set(decision.values()) & {"public", "signed"}:
                continue
            for headers, who in (({}, "no key"), (revoked, "a revoked key"), (expired, "an expired key")):
                if (status := await call(client, method, url, headers)) != 401:
                    wrong.append(f"{method} {path} with {who}: {status}, not 401")
            for role in ROLES:
                status = await call(client, method, url, keys[role])
                admitted = status not in (401, 403)
                if admitted != (decision[role] == "yes"):
                    wrong.append(f"{method} {path} as {role}: {status}, table says {decision[role]}")
    assert wrong == []
