"""Apply every Alembic history (`clinic migrate`) and tell whether the database is at head."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations"
#: Order matters only for readability; no history refers to another's tables.
HISTORIES = ("access", "queue", "intake", "referral")
_LOCK_ID = 7_246_391_001


def models_of(history: str) -> list[MetaData]:
    """What the tables of a history's schema should be, as the code declares them (the models of
    every owner of the schema: the referrals and the webhooks share `referral`)."""
    if history == "access":
        from services.common.access.models import ApiKey  # every access table is in that module

        return [ApiKey.metadata]
    if history == "queue":
        from services.common.queue.tables import metadata

        return [metadata]
    if history == "intake":
        from services.intake.db.models import IntakeBase

        return [IntakeBase.metadata]
    if history == "referral":
        from services.referral.db.models import ReferralBase
        from services.referral.db.webhooks import WebhookBase

        return [ReferralBase.metadata, WebhookBase.metadata]
    raise ValueError(f"no history {history!r}")


def comparison_options(history: str) -> dict[str, Any]:
    """Alembic's options for a history: its own schema only (each schema has its own history
    and version table), compared with the models of that schema."""

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ == "schema":
            return name == history
        return True

    return {
        "target_metadata": models_of(history),
        "version_table_schema": history,
        "include_schemas": True,
        "include_name": include_name,
    }


def alembic_config(history: str, connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR / history))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def expected_heads() -> dict[str, frozenset[str]]:
    """Each history's heads: a history may have several independent branches (the referral
    service's referrals and its webhooks, say), each a root of its own."""
    return {h: frozenset(ScriptDirectory.from_config(alembic_config(h)).get_heads()) for h in HISTORIES}


def pending_count(found: Mapping[str, frozenset[str]]) -> int:
    """How many revisions a database whose histories stand at `found` has yet to apply."""
    count = 0
    for history in HISTORIES:
        script = ScriptDirectory.from_config(alembic_config(history))
        every = {rev.revision for rev in script.walk_revisions()}
        current = tuple(found.get(history, ()))
        applied = {rev.revision for rev in script.iterate_revisions(current, "base")} if current else set()
        count += len(every - applied)
    return count


def _versions(connection: Connection) -> dict[str, frozenset[str]]:
    found: dict[str, frozenset[str]] = {}
    for history in HISTORIES:
        table = f"{history}.alembic_version"
        if connection.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar() is None:
            found[history] = frozenset()
            continue
        rows = connection.execute(text(f'SELECT version_num FROM "{history}".alembic_version'))  # noqa: S608
        found[history] = frozenset(rows.scalars())
    return found


def _reseal(connection: Connection) -> None:
    """Every webhook signing secret sealed with the current key (after a key rotation, those
    still under an earlier key listed in CLINIC_SECRET_KEY_PREVIOUS)."""
    from services.common.access.secret_box import secret_box
    from services.common.settings import get_settings
    from services.referral.webhooks.sealing import reseal_webhook_secrets

    box = secret_box(get_settings())
    if box is not None:
        reseal_webhook_secrets(connection, box)


def _upgrade_all(connection: Connection) -> int:
    connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _LOCK_ID})
    try:
        pending = pending_count(_versions(connection))  # under the lock: another migrator is done
        connection.commit()
        for history in HISTORIES:
            command.upgrade(alembic_config(history, connection), "heads")
            connection.commit()
        _reseal(connection)
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _LOCK_ID})
        connection.commit()
    return pending


async def upgrade_all(engine: AsyncEngine) -> int:
    """Every history to head, then the queue's subscriptions as the code declares them; returns
    how many revisions this call applied (0 when the database was already at head)."""
    from services.common.contracts.events import DEMAND
    from services.common.queue import refresh_demand, sync_subscriptions

    async with engine.connect() as conn:
        applied: int = await conn.run_sync(_upgrade_all)
    async with engine.begin() as conn:
        await sync_subscriptions(conn)
        for consumer in DEMAND:
            await refresh_demand(conn, consumer)
    return applied


async def current_versions(engine: AsyncEngine) -> dict[str, frozenset[str]]:
    async with engine.connect() as conn:
        return await conn.run_sync(_versions)


def behind_head(found: Mapping[str, frozenset[str]]) -> list[str]:
    """The histories not at head, in order."""
    return [h for h, heads in expected_heads().items() if found.get(h) != heads]


async def wait_until_at_head(engine: AsyncEngine, seconds: float, on_wait: Callable[[str], None]) -> None:
    """Return once the database answers and every history is at head (`clinic up` or
    `clinic migrate` applies them); `on_wait(why)` is called once if it has to wait; raise
    `TimeoutError(why)` after `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    told = False
    while True:
        try:
            behind = behind_head(await current_versions(engine))
            why = f"migrations not applied yet ({', '.join(behind)})" if behind else ""
        except (OSError, SQLAlchemyError, asyncpg.PostgresError) as exc:
            why = f"database not reachable yet ({type(exc).__name__})"
        if not why:
            return
        if not told:
            on_wait(why)
            told = True
        if loop.time() >= deadline:
            raise TimeoutError(why)
        await asyncio.sleep(0.5)
