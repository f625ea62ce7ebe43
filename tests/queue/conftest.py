from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.queue.support import EFFECTS_DDL, MARKS_DDL, Lane


@pytest.fixture(scope="session")
async def test_tables(engine: AsyncEngine) -> None:
    """Tables that test consumers write their effects and marks to (in `public`, not the queue)."""
    async with engine.begin() as conn:
        await conn.execute(text(EFFECTS_DDL))
        await conn.execute(text(MARKS_DDL))


@pytest.fixture
async def lane(engine: AsyncEngine, database_url: str, test_tables: None) -> Lane:
    return Lane(engine, database_url)
