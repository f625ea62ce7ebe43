"""A fresh database per reliability test (on the test server), migrated, so each test's counts
and webhook endpoints are its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from services.common.db import create_engine, libpq_url
from services.common.migrate import upgrade_all


@pytest.fixture
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    name = f"clinic_rel_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(libpq_url(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url, null_pool=True)
    await upgrade_all(engine)
    await engine.dispose()
    yield url
    admin = await asyncpg.connect(libpq_url(server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
