"""A key's name is who the history and the audit say acted: names are unique (revoked keys keep
theirs) and the system's own names are refused."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.auth import KeyError_, create_api_key, revoke_api_key


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
