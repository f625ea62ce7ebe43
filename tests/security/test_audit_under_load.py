"""Audited reads under more concurrent requests than the pool has connections: each read's audit
row is written after its handler, and once needed a second connection while the request's session
still held its first, so a full pool waited on itself (32 concurrent reads of `/v1/intakes`
answered 5 a second, 64 none, until the pool timed out)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db.engine import create_engine
from services.common.settings import Settings
from services.intake.app import create_app
from tests.conftest import MakeKey, auth, query, serve

POOL = 2
READERS = 4 * POOL


async def test_more_concurrent_reads_than_pooled_connections_are_all_answered_and_audited(
    settings: Settings, engine: AsyncEngine, make_key: MakeKey
) -> None:
    name = f"reader-{uuid.uuid4().hex[:6]}"
    key = auth(await make_key("front_desk", name=name))
    small = dataclasses.replace(settings, pool_size=POOL, pool_overflow=0)
    pooled = create_engine(settings.database_url or "", small)
    try:
        async with serve(create_app(small, pooled)) as client:
            reads = [client.get("/v1/intakes?limit=1", headers=key) for _ in range(READERS)]
            # Waiting on each other, they would be answered only as the pool's 30 s timeout hit.
            answers = await asyncio.wait_for(asyncio.gather(*reads), timeout=10)
    finally:
        await pooled.dispose()
    assert [a.status_code for a in answers] == [200] * READERS
    rows = await query(
        engine,
        "SELECT action, outcome FROM access.audit_events WHERE actor_name = :n",
        n=name,
    )
    assert [tuple(r) for r in rows] == [("listIntakes", "ok")] * READERS
