"""A fresh database per reliability test (on the test server), migrated, so each test's counts
and webhook endpoints are its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.conftest import migrated_database
from tests.reliability.harness import System, clinic


@pytest.fixture
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    async with migrated_database(server_url, "clinic_rel") as url:
        yield url


@pytest.fixture
def system(fresh_database: str) -> Iterator[System]:
    """`clinic up` started on a fresh database of the test server; whatever still runs is stopped
    at the end."""
    with clinic(database_url=fresh_database) as system:
        system.start()
        yield system
