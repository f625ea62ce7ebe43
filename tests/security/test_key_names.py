"""A key's name is who the history and the audit say acted: names are unique (revoked keys keep
theirs) and the system's own names are refused."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.access.auth import KeyError_, create_api_key, revoke_api_key
from services.common.settings import Settings
from services.referral.app import create_app as create_referral
from tests.conftest import auth, clinic_on


@pytest.mark.parametrize(
    "name", ["triage", "Triage ", "system", "inbound:intake-forms", "INBOUND:x", "cli:root"]
)
async def test_the_systems_own_names_are_refused(engine: AsyncEngine, name: str) -> None:
    async with AsyncSession(engine) as session:
        with pytest.raises(KeyError_, match="system's own"):
            await create_api_key(session, role="clinician", name=name)


async def test_a_name_in_use_or_once_used_is_refused(engine: AsyncEngine) -> None:
    name = f"reception-{uuid.uuid4().hex[:6]}"
    async with AsyncSession(engine) as session:
        await create_api_key(session, role="front_desk", name=name)
        await session.commit()
        with pytest.raises(KeyError_, match="exists already"):
            await create_api_key(session, role="clinician", name=name.upper())
        await session.rollback()
        await revoke_api_key(session, name)
        await session.commit()
        with pytest.raises(KeyError_, match="exists already"):
            await create_api_key(session, role="front_desk", name=name)


async def test_a_key_past_its_expiry_is_refused_and_keys_list_shows_it(
    engine: AsyncEngine, database_url: str, settings: Settings
) -> None:
    name = f"temp-{uuid.uuid4().hex[:6]}"
    async with AsyncSession(engine) as session:
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        key, _ = await create_api_key(session, role="clinician", name=name, expires_at=soon)
        past_key, _ = await create_api_key(
            session,
            role="clinician",
            name=name + "-old",
            expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
        )
        await session.commit()
    live = dataclasses.replace(settings, api_key_cache_seconds=0)
    async with AsyncTestClient(create_referral(live, engine, run_workers=False)) as client:
        assert (await client.get("/v1/referrals", headers=auth(key))).status_code == 200
        assert (await client.get("/v1/referrals", headers=auth(past_key))).status_code == 401
    listed = clinic_on(database_url, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split("\t") == ["name", "role", "destination", "created", "last_used", "expires", "revoked"]
    [mine] = [r.split("\t") for r in rows if r.startswith(name + "\t")]
    assert mine[1] == "clinician" and mine[4] != "-" and mine[5].startswith(soon.date().isoformat())
    assert key not in listed.stdout and "clk_" not in listed.stdout
