"""The admin API for webhook endpoints: the secret shown once, filters, edits, the SSRF refusals."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from services.common.access.secret_box import secret_box
from tests.conftest import MakeKey, auth
from tests.webhooks.support import Hooks, referral_created

Api = AsyncTestClient[Any]


async def test_created_endpoint_shows_its_secret_once(hooks: Hooks) -> None:
    client, admin = hooks.client, hooks.admin
    url, _ = hooks.route()
    created = await hooks.endpoint(url, ["referral.created"], description="EHR bridge")
    assert created["secret"].startswith("whsec_")
    assert created["enabled"] is True and created["destinations"] is None
    assert created["event_types"] == ["referral.created"]
    shown = await client.get(f"/v1/webhooks/endpoints/{created['id']}", headers=admin)
    assert shown.status_code == 200
    assert "secret" not in shown.json()
    assert created["secret"] not in shown.text
    listed = await client.get("/v1/webhooks/endpoints", headers=admin)
    assert created["secret"] not in listed.text
    async with hooks.engine.connect() as conn:  # what signs is what was shown, kept sealed
        stored, creator_id = (
            await conn.execute(
                text("SELECT secret, created_by_id FROM referral.webhook_endpoints WHERE id = :id"),
                {"id": created["id"]},
            )
        ).one()
        admin_key_id = await conn.scalar(
            text("SELECT id FROM access.api_keys WHERE name = :n"), {"n": created["created_by"]}
        )
    assert created["secret"] not in stored
    assert creator_id is not None and creator_id == admin_key_id  # who made it, by id beside the name
    box = secret_box(hooks.settings)
    assert box is not None and box.open(stored) == created["secret"]


async def test_endpoints_are_listed_by_event_type_and_destination(hooks: Hooks) -> None:
    url, _ = hooks.route()
    urgent = await hooks.endpoint(url, ["referral.status_changed"], destinations=["urgent_care"])
    everything = await hooks.endpoint(url, ["referral.status_changed", "intake.submitted"])
    intake_only = await hooks.endpoint(url, ["intake.submitted"])
    mine = {urgent["id"], everything["id"], intake_only["id"]}

    async def listed(**params: str) -> set[str]:
        page = await hooks.get("/v1/webhooks/endpoints", **params, limit="200")
        return {e["id"] for e in page["items"]} & mine

    assert await listed() == mine
    assert await listed(event_type="intake.submitted") == {everything["id"], intake_only["id"]}
    assert await listed(destination="urgent_care") == {urgent["id"], everything["id"], intake_only["id"]}
    assert await listed(destination="pain_management") == {everything["id"], intake_only["id"]}
    assert await listed(event_type="referral.status_changed", destination="pain_management") == {
        everything["id"]
    }
    bad = await hooks.client.get(
        "/v1/webhooks/endpoints", params={"event_type": "referral.exploded"}, headers=hooks.admin
    )
    assert bad.status_code == 422
    assert "referral.created" in bad.json()["errors"][0]["allowed"]


async def test_endpoint_list_pages_with_a_cursor(hooks: Hooks) -> None:
    url, _ = hooks.route()
    mine = {(await hooks.endpoint(url, ["referral.follow_up_due"]))["id"] for _ in range(3)}
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", "event_type": "referral.follow_up_due"}
        if cursor:
            params["cursor"] = cursor
        page = await hooks.get("/v1/webhooks/endpoints", **params)
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert mine <= set(seen) and len(seen) == len(set(seen))
    for path, params, field in (
        ("/v1/webhooks/endpoints", {"cursor": "nonsense!"}, "cursor"),
        ("/v1/webhooks/endpoints", {"limit": "0"}, "limit"),
        ("/v1/webhooks/deliveries", {"limit": "201"}, "limit"),
        ("/v1/webhooks/deliveries", {"status": "lost"}, "status"),
    ):
        bad = await hooks.client.get(path, params=params, headers=hooks.admin)
        assert bad.status_code == 422, (params, bad.text)
        assert bad.json()["errors"][0]["field"] == field
    lost = await hooks.client.get("/v1/webhooks/deliveries", params={"status": "lost"}, headers=hooks.admin)
    assert lost.json()["errors"][0]["allowed"] == ["pending", "succeeded", "dead"]


async def test_endpoint_can_be_changed_disabled_enabled_and_deleted(hooks: Hooks) -> None:
    client, admin = hooks.client, hooks.admin
    url, _ = hooks.route()
    other_url, _ = hooks.route()
    created = await hooks.endpoint(url, ["referral.created"], destinations=["urgent_care"], description="a")
    path = f"/v1/webhooks/endpoints/{created['id']}"
    changed = await client.patch(
        path,
        json={
            "url": other_url,
            "event_types": ["referral.created", "referral.follow_up_due"],
            "destinations": None,
        },
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["url"] == other_url and body["destinations"] is None and body["description"] == "a"
    assert body["event_types"] == ["referral.created", "referral.follow_up_due"]
    off = (await client.patch(path, json={"enabled": False}, headers=admin)).json()
    assert off["enabled"] is False and off["disabled_at"] and "disabled by" in off["disabled_reason"]
    replay = await client.post(f"{path}/replay", json={"since": "2026-01-01T00:00:00Z"}, headers=admin)
    assert replay.status_code == 409
    on = (await client.patch(path, json={"enabled": True}, headers=admin)).json()
    assert on["enabled"] is True and on["disabled_at"] is None and on["disabled_reason"] is None
    assert (await client.delete(path, headers=admin)).status_code == 204
    assert (await client.get(path, headers=admin)).status_code == 404
    assert (await client.get(f"{path}/deliveries", headers=admin)).status_code == 404


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://127.0.0.1/hook", "only http and https"),
        ("http://10.1.2.3/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::1]:9/hook", "::1"),
        ("http://192.168.0.10/hook", "192.168.0.10"),
        ("https://no-such-host.invalid/hook", "does not resolve"),
        ("not a url", "only http and https"),
    ],
)
async def test_targets_that_are_not_public_http_are_refused(
    client: Api, admin: dict[str, str], url: str, why: str
) -> None:
    response = await client.post(
        "/v1/webhooks/endpoints", json={"url": url, "event_types": ["referral.created"]}, headers=admin
    )
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "url" and why in error["message"]


async def test_endpoint_body_is_validated_by_field(client: Api, admin: dict[str, str]) -> None:
    url = "http://127.0.0.1:9/hook"
    cases = [
        ({"url": url, "event_types": ["referral.exploded"]}, "event_types", "referral.created"),
        ({"url": url, "event_types": []}, "event_types", None),
        (
            {"url": url, "event_types": ["referral.created"], "destinations": ["mars"]},
            "destinations",
            "urgent_care",
        ),
        ({"event_types": ["referral.created"]}, "url", None),
    ]
    for body, field, allowed in cases:
        response = await client.post("/v1/webhooks/endpoints", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        [error] = response.json()["errors"]
        assert error["field"].startswith(field), error
        if allowed:
            assert allowed in error["allowed"]


async def test_only_admins_manage_webhooks(client: Api, make_key: MakeKey) -> None:
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["referral.created"]}
    assert (await client.post("/v1/webhooks/endpoints", json=body)).status_code == 401
    for role, destination in (("clinician", None), ("specialist", "urgent_care"), ("front_desk", None)):
        headers = auth(await make_key(role, destination))
        assert (await client.post("/v1/webhooks/endpoints", json=body, headers=headers)).status_code == 403
        assert (await client.get("/v1/webhooks/deliveries", headers=headers)).status_code == 403


async def test_unknown_ids_are_404(client: Api, admin: dict[str, str]) -> None:
    missing = uuid.uuid4()
    for method, path in (
        ("GET", f"/v1/webhooks/endpoints/{missing}"),
        ("DELETE", f"/v1/webhooks/endpoints/{missing}"),
        ("POST", f"/v1/webhooks/endpoints/{missing}/rotate-secret"),
        ("GET", f"/v1/webhooks/deliveries/{missing}"),
        ("POST", f"/v1/webhooks/deliveries/{missing}/retry"),
    ):
        response = await client.request(method, path, headers=admin)
        assert response.status_code == 404, (method, path)
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_deleted_endpoint_is_gone_from_the_api_but_its_row_history_and_audit_stay(
    hooks: Hooks,
) -> None:
    client, admin = hooks.client, hooks.admin
    url, route = hooks.route(default=500)
    endpoint = await hooks.endpoint(url, ["referral.created"], description="to be removed")
    path = f"/v1/webhooks/endpoints/{endpoint['id']}"
    async with hooks.running():
        await hooks.publish(referral_created())
        [failing] = await hooks.until_deliveries(endpoint, lambda d: d["attempts"] >= 1)
    assert (await client.delete(path, headers=admin)).status_code == 204

    # Gone from the API: 404 on every verb, absent from the list.
    assert (await client.get(path, headers=admin)).status_code == 404
    assert (await client.patch(path, json={"description": "x"}, headers=admin)).status_code == 404
    assert (await client.delete(path, headers=admin)).status_code == 404
    assert (await client.post(f"{path}/rotate-secret", headers=admin)).status_code == 404
    listed = await hooks.get("/v1/webhooks/endpoints", limit="100")
    assert endpoint["id"] not in [e["id"] for e in listed["items"]]

    # Its delivery history stays in the delivery log; what was still pending is dead, never sent.
    history = await hooks.get("/v1/webhooks/deliveries", endpoint_id=endpoint["id"])
    [kept] = history["items"]
    assert kept["id"] == failing["id"] and kept["status"] == "dead"
    assert "endpoint deleted" in kept["last_error"]
    assert (await hooks.delivery(kept["id"]))["attempt_log"]
    retried = await client.post(f"/v1/webhooks/deliveries/{kept['id']}/retry", headers=admin)
    assert retried.status_code == 404
    route.default = 200
    async with hooks.running():
        await hooks.publish(referral_created())
        await asyncio.sleep(1.0)
    assert all(r.answered == 500 for r in hooks.receiver.requests(url))  # nothing sent after the delete

    async with hooks.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT deleted_at FROM referral.webhook_endpoints WHERE id = :id"),
                {"id": endpoint["id"]},
            )
        ).one()
        audited = (
            await conn.execute(
                text(
                    "SELECT detail FROM access.audit_events WHERE action = 'deleteWebhookEndpoint' "
                    "AND resource_id = :id AND outcome = 'ok'"
                ),
                {"id": endpoint["id"]},
            )
        ).scalar_one()
    assert row.deleted_at is not None
    [change] = audited["changes"]
    assert change["action"] == "delete" and change["table"] == "webhook_endpoints"
    assert change["before"]["deleted_at"] is None and change["after"]["deleted_at"] is not None
    assert change["before"]["url"] == url and change["before"]["description"] == "to be removed"
    assert not any("secret" in key for key in (*change["before"], *change["after"]))
    assert endpoint["secret"] not in str(audited)
