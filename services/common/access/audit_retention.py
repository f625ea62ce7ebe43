"""The access audit's retention: rows older than `audit_retention_days` are purged now and then
(the only deletion the table's trigger allows, for the purge's own transaction)."""

from __future__ import annotations

import asyncio
import datetime as dt
from contextlib import suppress

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = structlog.get_logger(__name__)


async def purge_older_than(engine: AsyncEngine, cutoff: dt.datetime) -> int:
    """Delete audit rows older than `cutoff` (the only deletion the table's trigger allows)."""
    async with engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('clinic.audit_purge_before', :cutoff, true)"),
            {"cutoff": cutoff.isoformat()},
        )
        result = await conn.execute(
            text("DELETE FROM access.audit_events WHERE at < :cutoff"), {"cutoff": cutoff}
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def run_audit_retention(engine: AsyncEngine, retention_days: int, stop: asyncio.Event) -> None:
    """Purge rows past the retention period now and then, until stopped."""
    while not stop.is_set():
        try:
            cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=retention_days)
            removed = await purge_older_than(engine, cutoff)
            if removed:
                log.info("audit_purged", removed=removed)
        except Exception as exc:  # the next round tries again
            log.warning("audit_purge_failed", error=type(exc).__name__)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=3600)
