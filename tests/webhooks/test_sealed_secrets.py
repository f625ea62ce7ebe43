"""Signing secrets are sealed at rest: the table never holds one in readable form, the sender still
signs with the secret the admin was shown, a rotated settings key keeps old rows readable (and
`clinic migrate` moves them to the new key), and a secret no key opens fails its delivery with a
clear error instead of crashing the sender."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.access.secret_box import SecretBox, SecretUnreadable, ensure_key_file, secret_box
from services.referral.webhooks.bookkeeping import NOT_SIGNED_ERROR
from services.referral.webhooks.sealing import reseal_webhook_secrets
from tests.webhooks.support import Hooks, referral_created


async def _table_text(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT t::text FROM referral.webhook_endpoints t"))
        return "\n".join(rows.scalars())


async def _stored(engine: AsyncEngine, endpoint_id: str) -> Any:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                text("SELECT secret, previous_secret FROM referral.webhook_endpoints WHERE id = :id"),
                {"id": endpoint_id},
            )
        ).one()


async def test_no_secret_is_readable_in_the_table_and_deliveries_verify_with_the_shown_ones(
    hooks: Hooks,
) -> None:
    url, route = hooks.route()
    endpoint = await hooks.endpoint(url, ["referral.created"])
    first = endpoint["secret"]
    rotated = await hooks.client.post(
        f"/v1/webhooks/endpoints/{endpoint['id']}/rotate-secret", headers=hooks.admin
    )
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["secret"]
    stored = await _table_text(hooks.engine)
    for secret in (first, second):
        assert secret.startswith("whsec_")
        assert secret not in stored and secret.removeprefix("whsec_") not in stored
    assert "whsec_" not in stored
    route.secrets = [first, second]
    event = referral_created()
    async with hooks.running():
        await hooks.publish(event)
        [message] = await hooks.messages(url, 1, event)
    # Two signatures during the rotation's grace, each verifying with a secret the admin was shown.
    assert sorted(message.verified_by) == sorted([first, second])


async def test_a_rotated_settings_key_keeps_old_rows_readable_and_migrate_reseals_them(hooks: Hooks) -> None:
    old_key = hooks.settings.secret_key
    assert old_key is not None
    new_key = Fernet.generate_key().decode()
    url, _ = hooks.route()
    endpoint = await hooks.endpoint(url, ["referral.created"])
    before = await _stored(hooks.engine, endpoint["id"])

    # The new key is current, the old one is listed as previous: the sender still signs.
    event = referral_created()
    async with hooks.running(secret_key=new_key, secret_keys_previous=(old_key,)):
        await hooks.publish(event)
        [message] = await hooks.messages(url, 1, event)
    assert message.verified_by == [endpoint["secret"]]

    # `clinic migrate` re-seals under the new key; then the old key is no longer needed.
    rotated = SecretBox((new_key, old_key))
    async with hooks.engine.begin() as conn:
        resealed = await conn.run_sync(reseal_webhook_secrets, rotated)
    assert resealed.unreadable == [] and resealed.sealed >= 1
    after = await _stored(hooks.engine, endpoint["id"])
    assert after.secret != before.secret
    assert SecretBox((new_key,)).open(after.secret) == endpoint["secret"]
    with pytest.raises(SecretUnreadable):
        SecretBox((old_key,)).open(after.secret)
    # Put the row back under the suite's key for the tests after this one.
    async with hooks.engine.begin() as conn:
        await conn.run_sync(reseal_webhook_secrets, SecretBox((old_key, new_key)))


async def test_a_secret_no_key_opens_fails_the_attempt_with_a_clear_error_and_no_secret_logged(
    hooks: Hooks,
) -> None:
    url, _ = hooks.route()
    endpoint = await hooks.endpoint(url, ["referral.created"])
    event = referral_created()
    with structlog.testing.capture_logs() as logs:
        async with hooks.running(secret_key=Fernet.generate_key().decode(), secret_keys_previous=()):
            await hooks.publish(event)
            [failed] = await hooks.until_deliveries(
                endpoint, lambda d: d["attempts"] >= 1 and d["last_error"]
            )
    assert failed["last_error"] == NOT_SIGNED_ERROR and failed["last_status_code"] is None
    assert hooks.receiver.requests(url) == []  # nothing unsigned left the clinic
    unreadable = [entry for entry in logs if entry["event"] == "webhook_secret_unreadable"]
    assert unreadable and unreadable[0]["endpoint_id"] == endpoint["id"]
    assert endpoint["secret"] not in repr(logs)
    detail = await hooks.delivery(failed["id"])
    assert detail["attempt_log"][0]["error"] == NOT_SIGNED_ERROR


async def test_without_any_key_an_endpoint_cannot_be_created(hooks: Hooks, tmp_path: Any) -> None:
    import dataclasses

    from litestar.testing import AsyncTestClient

    from services.common.http.web import ServiceSpec, build_app
    from services.referral.webhooks import route_handlers

    keyless = dataclasses.replace(hooks.settings, secret_key=None, secret_keys_previous=(), data_dir=tmp_path)
    spec = ServiceSpec(name="referral", title="referral", description="", route_handlers=route_handlers)
    url, _ = hooks.route()
    async with AsyncTestClient(build_app(spec, keyless, hooks.engine, run_workers=False)) as client:
        response = await client.post(
            "/v1/webhooks/endpoints",
            json={"url": url, "event_types": ["referral.created"]},
            headers=hooks.admin,
        )
    assert response.status_code == 503
    assert "CLINIC_SECRET_KEY" in response.json()["detail"]
    assert secret_box(keyless) is None


def test_the_data_dir_key_is_made_once_for_its_owner_and_reused(tmp_path: Any) -> None:
    key, made = ensure_key_file(tmp_path)
    again, made_again = ensure_key_file(tmp_path)
    assert made and not made_again and key == again
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert SecretBox((again,)).open(SecretBox((key,)).seal("whsec_x")) == "whsec_x"
