"""Migration `webhooks_0003` seals the plain signing secrets an older release stored, with the
configured key; with plain secrets and no key it stops and says how to configure one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.access.secret_box import SecretBox
from services.common.access.signing import new_secret
from services.common.db.engine import create_engine
from services.common.db.migrate import HISTORIES, alembic_config, upgrade_all
from services.common.settings import get_settings
from services.referral.webhooks.sealing import PlainSecretsWithoutKey
from tests.conftest import empty_database


@pytest.fixture
async def before_sealing(server_url: str) -> AsyncIterator[AsyncEngine]:
    """A fresh database migrated to just before the sealing (`webhooks_0002`)."""
    async with empty_database(server_url, "clinic_sealing") as url:
        engine = create_engine(url)

        def migrate(connection: Connection) -> None:
            for history in HISTORIES:
                target = "webhooks_0002" if history == "referral" else "heads"
                command.upgrade(alembic_config(history, connection), target)
                connection.commit()

        async with engine.connect() as conn:
            await conn.run_sync(migrate)
        yield engine
        await engine.dispose()


async def _plain_endpoint(engine: AsyncEngine) -> tuple[str, str]:
    secret, previous = new_secret(), new_secret()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO referral.webhook_endpoints (id, url, event_types, secret, previous_secret, "
                "previous_secret_expires_at, created_by) VALUES (gen_random_uuid(), 'http://127.0.0.1:9/x', "
                "ARRAY['referral.created'], :s, :p, now() + interval '1 hour', 'old release')"
            ),
            {"s": secret, "p": previous},
        )
    return secret, previous


async def test_plain_secrets_are_sealed_with_the_configured_key(before_sealing: AsyncEngine) -> None:
    secret, previous = await _plain_endpoint(before_sealing)
    await upgrade_all(before_sealing)
    async with before_sealing.connect() as conn:
        table = "\n".join(
            (await conn.execute(text("SELECT t::text FROM referral.webhook_endpoints t"))).scalars()
        )
        row = (
            await conn.execute(text("SELECT secret, previous_secret FROM referral.webhook_endpoints"))
        ).one()
    assert secret not in table and previous not in table and "whsec_" not in table
    key = get_settings().secret_key
    assert key is not None
    box = SecretBox((key,))
    assert (box.open(row.secret), box.open(row.previous_secret)) == (secret, previous)


async def test_without_a_key_plain_secrets_stop_the_migration_with_a_clear_message(
    before_sealing: AsyncEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    await _plain_endpoint(before_sealing)
    monkeypatch.delenv("CLINIC_SECRET_KEY")
    monkeypatch.setenv("CLINIC_DATA_DIR", str(tmp_path))  # no key file there either
    get_settings.cache_clear()
    try:
        with pytest.raises(PlainSecretsWithoutKey, match="CLINIC_SECRET_KEY"):
            await upgrade_all(before_sealing)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    async with before_sealing.connect() as conn:  # nothing changed: still before the sealing
        version = set(
            (await conn.execute(text("SELECT version_num FROM referral.alembic_version"))).scalars()
        )
    assert "webhooks_0003" not in version
