"""Every schema's migrations build exactly the tables its models declare: Alembic's autogenerate,
run against the freshly migrated test database, finds nothing to add, drop or alter."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db.migrate import HISTORIES, comparison_options, models_of


def _differences(connection: Connection, history: str) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={**comparison_options(history), "compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, context.opts["target_metadata"]))


@pytest.mark.parametrize("history", HISTORIES)
async def test_the_migrated_schema_is_what_the_models_declare(engine: AsyncEngine, history: str) -> None:
    assert all(t.schema == history for m in models_of(history) for t in m.tables.values())
    async with engine.connect() as conn:
        diff = await conn.run_sync(_differences, history)
    assert [d if isinstance(d, tuple) else list(d) for d in diff] == [], "\n".join(map(str, diff))
