"""A fresh database per reliability test (on the test server), migrated, so each test's counts
and webhook endpoints are its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import migrated_database


@pytest.fixture
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    async with migrated_database(server_url, "clinic_rel") as url:
        yield url
