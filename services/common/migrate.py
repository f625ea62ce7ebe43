"""Apply every Alembic history (`clinic migrate`) and tell whether the database is at head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
#: Order matters only for readability; no history refers to another's tables.
HISTORIES = ("access", "queue", "intake", "referral")
_LOCK_ID = 7_246_391_001


def alembic_config(history: str, connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR / history))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def expected_heads() -> dict[str, str | None]:
    return {h: ScriptDirectory.from_config(alembic_config(h)).get_current_head() for h in HISTORIES}


def _upgrade_all(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _LOCK_ID})
    try:
        for history in HISTORIES:
            command.upgrade(alembic_config(history, connection), "head")
            connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _LOCK_ID})
        connection.commit()


async def upgrade_all(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.run_sync(_upgrade_all)


async def current_versions(engine: AsyncEngine) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    async with engine.connect() as conn:
        for history in HISTORIES:
            exists = (
                await conn.execute(text("SELECT to_regclass(:t)"), {"t": f"{history}.alembic_version"})
            ).scalar()
            if exists is None:
                found[history] = None
                continue
            found[history] = (
                await conn.execute(text(f'SELECT version_num FROM "{history}".alembic_version'))  # noqa: S608
            ).scalar()
    return found
