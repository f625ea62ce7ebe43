"""Webhooks out, end to end: events published on the real queue, the real consumer and sender,
a real receiver on a local port that checks every signature with `standardwebhooks`."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from services.common.access.secret_box import secret_box
from services.referral.webhooks.sender import WebhookSender
from services.referral.webhooks.ssrf import TargetGuard
from services.referral.webhooks.tuning import SenderTuning
from tests.api_guide import webhook_fields
from tests.webhooks.support import (
    PATIENT_STRINGS,
    Hooks,
    drain_backlog,
    intake_submitted,
    referral_created,
    status_changed,
)


async def test_subscribed_events_arrive_signed_per_standard_webhooks(hooks: Hooks) -> None:
    url, _ = hooks.route()
    endpoint = await hooks.endpoint(url, ["referral.created", "referral.status_changed"])
    created = referral_created()
    async with hooks.running():
        await hooks.publish(created, status_changed(created, "accepted"))
        got = await hooks.messages(url, 2, created)
    assert sorted(m.json()["type"] for m in got) == ["referral.created", "referral.status_changed"]
    for message in got:
        assert message.verified_by == [endpoint["secret"]]
        assert message.headers["content-type"] == "application/json"
    changed = next(m.json() for m in got if m.json()["type"] == "referral.status_changed")
    assert changed["data"]["status"] == "accepted"
    assert changed["data"]["previous_status"] == "requested"
    assert changed["data"]["destination"] == "pain_management"
    assert changed["timestamp"].endswith("Z")


async def test_no_patient_data_in_any_delivered_body(hooks: Hooks) -> None:
    url, _ = hooks.route()
    every_type = ["referral.created", "referral.status_changed", "referral.follow_up_due", "intake.submitted"]
    endpoint = await hooks.endpoint(url, every_type)
    intake = intake_submitted()
    created = referral_created(intake_id=intake.intake_id)
    async with hooks.running():
        await hooks.publish(intake, created, status_changed(created, "declined"))
        got = await hooks.messages(url, 3, intake, created)
    for message in hooks.receiver.requests(url):  # everything it received, not only ours
        assert message.verified_by == [endpoint["secret"]]
        for value in PATIENT_STRINGS:
            assert value not in message.body.decode()
    by_type = {m.json()["type"]: m.json()["data"] for m in got}
    # Exactly the fields the API guide publishes for each event, nothing more.
    published = webhook_fields()
    assert {t: set(data) for t, data in by_type.items()} == {t: published[t] for t in by_type}
    assert set(by_type) == {"intake.submitted", "referral.created", "referral.status_changed"}
    assert "changed_by" not in by_type["referral.status_changed"]


async def test_500_twice_then_200_is_one_success_after_retries(hooks: Hooks) -> None:
    url, _ = hooks.route(script=[500, 500])
    endpoint = await hooks.endpoint(url, ["referral.created"])
    created = referral_created()
    async with hooks.running():
        await hooks.publish(created)
        got = await hooks.messages(url, 3, created)
        [done] = await hooks.until_deliveries(endpoint, lambda d: d["status"] == "succeeded")
    assert [m.answered for m in got] == [500, 500, 200]
    assert len({m.headers["webhook-id"] for m in got}) == 1  # one message, retried
    assert all(m.verified_by for m in got)
    assert done["attempts"] == 3 and done["last_status_code"] == 200
    detail = await hooks.delivery(done["id"])
    assert [a["status_code"] for a in detail["attempt_log"]] == [500, 500, 200]
    assert detail["attempt_log"][0]["response_excerpt"] == "answered 500"
    assert all(a["latency_ms"] >= 0 for a in detail["attempt_log"])
    assert (await hooks.endpoint_now(endpoint))["failing_since"] is None


async def test_a_hanging_endpoint_does_not_delay_a_healthy_one(hooks: Hooks) -> None:
    hold = threading.Event()
    slow_url, _ = hooks.route(hold=hold)
    fast_url, _ = hooks.route()
    slow = await hooks.endpoint(slow_url, ["referral.created"])
    await hooks.endpoint(fast_url, ["referral.created"])
    events = [referral_created() for _ in range(4)]
    async with hooks.running(webhook_timeout_seconds=60.0) as sender:
        await hooks.publish(*events)
        await hooks.messages(fast_url, 4, *events)
        # Every message reached the healthy endpoint while the slow one still holds its sends,
        # and the slow one holds no more than its own share of concurrent sends.
        assert hooks.receiver.requests(slow_url) == []
        assert sender.in_flight[uuid.UUID(slow["id"])] == hooks.settings.webhook_concurrency_per_endpoint
        hold.set()
        await hooks.messages(slow_url, 4, *events)


async def test_410_gone_disables_the_endpoint(hooks: Hooks) -> None:
    url, _ = hooks.route(default=410)
    other_url, _ = hooks.route()
    endpoint = await hooks.endpoint(url, ["referral.created"])
    await hooks.endpoint(other_url, ["referral.created"])
    first, later = referral_created(), referral_created()
    async with hooks.running():
        await hooks.publish(first)
        await hooks.messages(url, 1, first)
        now = await hooks.until_disabled(endpoint)
        await hooks.publish(later)
        await hooks.messages(other_url, 1, later)
    assert "410" in now["disabled_reason"]
    [only] = await hooks.deliveries(endpoint)  # nothing new for a disabled endpoint
    assert only["status"] == "dead" and only["attempts"] == 1 and only["last_status_code"] == 410
    assert len(hooks.receiver.requests(url)) == 1


async def end_grace_period(hooks: Hooks, endpoint_id: str) -> None:
    """A rotated endpoint's previous secret stops signing now (not 24 hours on)."""
    async with hooks.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE referral.webhook_endpoints SET previous_secret_expires_at = now() "
                "- interval '1 second' WHERE id = :id"
            ),
            {"id": endpoint_id},
        )


async def test_rotated_secret_signs_beside_the_old_one_for_the_grace_period(hooks: Hooks) -> None:
    url, route = hooks.route()
    endpoint = await hooks.endpoint(url, ["referral.created"])
    old = endpoint["secret"]
    response = await hooks.client.post(
        f"/v1/webhooks/endpoints/{endpoint['id']}/rotate-secret", headers=hooks.admin
    )
    assert response.status_code == 200
    new = response.json()["secret"]
    assert new.startswith("whsec_") and new != old
    expires = datetime.fromisoformat(response.json()["previous_secret_expires_at"])
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(hours=24)
    route.secrets = [old, new]
    during, after = referral_created(), referral_created()
    async with hooks.running():
        await hooks.publish(during)
        [signed_twice] = await hooks.messages(url, 1, during)
        await end_grace_period(hooks, endpoint["id"])  # the 24 hours are over
        await hooks.publish(after)
        [signed_once] = await hooks.messages(url, 1, after)
    assert signed_twice.verified_by == [old, new]
    assert len(signed_twice.headers["webhook-signature"].split()) == 2
    assert signed_once.verified_by == [new]
    assert (await hooks.endpoint_now(endpoint))["previous_secret_expires_at"] is None


async def test_a_secret_rotated_while_the_sender_runs_signs_its_next_delivery(hooks: Hooks) -> None:
    # The sender keeps the secrets it has opened: a rotation must still reach the next delivery.
    url, route = hooks.route()
    endpoint = await hooks.endpoint(url, ["referral.created"])
    old = endpoint["secret"]
    first, second = referral_created(), referral_created()
    async with hooks.running():
        await hooks.publish(first)
        [before] = await hooks.messages(url, 1, first)
        response = await hooks.client.post(
            f"/v1/webhooks/endpoints/{endpoint['id']}/rotate-secret", headers=hooks.admin
        )
        new = response.json()["secret"]
        route.secrets = [old, new]
        await end_grace_period(hooks, endpoint["id"])
        await hooks.publish(second)
        [after] = await hooks.messages(url, 1, second)
    assert before.verified_by == [old]
    assert after.verified_by == [new]


async def test_exhausted_delivery_is_dead_listed_and_replayed(hooks: Hooks) -> None:
    url, route = hooks.route(default=500)
    endpoint = await hooks.endpoint(url, ["referral.created"])
    since = datetime.now(UTC).isoformat()
    first, second = referral_created(), referral_created()
    async with hooks.running(webhook_retry_schedule=(0, 0)):
        await hooks.publish(first, second)
        dead = await hooks.until_deliveries(endpoint, lambda d: d["status"] == "dead", count=2)
        assert all(d["attempts"] == 3 and d["last_status_code"] == 500 for d in dead)
        listed = await hooks.get("/v1/webhooks/deliveries", status="dead", limit="200")
        assert {d["id"] for d in dead} <= {d["id"] for d in listed["items"]}
        assert len(await hooks.messages(url, 6, first, second)) == 6

        route.default = 200
        one, other = dead[0]["id"], dead[1]["id"]
        retried = await hooks.client.post(f"/v1/webhooks/deliveries/{one}/retry", headers=hooks.admin)
        assert retried.status_code == 202 and retried.json()["status"] == "pending"
        await hooks.until_deliveries(endpoint, lambda d: d["id"] == one and d["status"] == "succeeded")
        replayed = await hooks.client.post(
            f"/v1/webhooks/endpoints/{endpoint['id']}/replay", json={"since": since}, headers=hooks.admin
        )
        assert replayed.status_code == 202 and replayed.json() == {"replayed": 1}
        await hooks.until_deliveries(endpoint, lambda d: d["id"] == other and d["status"] == "succeeded")
    got = await hooks.messages(url, 8, first, second)
    assert sorted(m.answered for m in got) == [200, 200, 500, 500, 500, 500, 500, 500]
    assert all(m.verified_by for m in got)


async def test_an_endpoint_failing_for_five_days_is_disabled(hooks: Hooks) -> None:
    url, _ = hooks.route(default=503)
    endpoint = await hooks.endpoint(url, ["referral.created"])
    async with hooks.engine.begin() as conn:  # it has failed every attempt since six days ago
        await conn.execute(
            text(
                "UPDATE referral.webhook_endpoints SET first_failure_at = now() - interval '6 days' "
                "WHERE id = :id"
            ),
            {"id": endpoint["id"]},
        )
    async with hooks.running():
        await hooks.publish(referral_created())
        now = await hooks.until_disabled(endpoint)
    assert "5 days" in now["disabled_reason"]
    [dead] = await hooks.deliveries(endpoint)
    assert dead["status"] == "dead" and dead["attempts"] == 1


async def test_retry_after_is_honoured(hooks: Hooks) -> None:
    url, _ = hooks.route(default=429, headers={"Retry-After": "3600"})
    endpoint = await hooks.endpoint(url, ["referral.created"])
    async with hooks.running():
        await hooks.publish(referral_created())
        [waiting] = await hooks.until_deliveries(endpoint, lambda d: d["last_status_code"] == 429)
    assert waiting["status"] == "pending" and waiting["attempts"] == 1
    assert datetime.fromisoformat(waiting["next_attempt_at"]) > datetime.now(UTC) + timedelta(minutes=55)


async def test_redirects_are_not_followed(hooks: Hooks) -> None:
    elsewhere, _ = hooks.route()
    url, _ = hooks.route(default=307, headers={"Location": elsewhere})
    endpoint = await hooks.endpoint(url, ["referral.created"])
    async with hooks.running():
        await hooks.publish(referral_created())
        [failed] = await hooks.until_deliveries(endpoint, lambda d: d["last_status_code"] == 307)
    assert failed["status"] == "pending"
    assert "redirects are not followed" in failed["last_error"]
    assert hooks.receiver.requests(elsewhere) == []


async def test_a_target_no_longer_allowed_is_refused_at_send_time(hooks: Hooks) -> None:
    url, _ = hooks.route()
    endpoint = await hooks.endpoint(url, ["referral.created"])  # allowed when it was saved
    async with hooks.running(guard=TargetGuard()):  # now loopback is not allowed
        await hooks.publish(referral_created())
        [refused] = await hooks.until_deliveries(endpoint, lambda d: bool(d["last_error"]))
    assert "refused" in refused["last_error"] and "127.0.0.1" in refused["last_error"]
    assert refused["last_status_code"] is None
    assert hooks.receiver.requests(url) == []


async def test_destination_filter_and_disabled_endpoints(hooks: Hooks) -> None:
    urgent_url, _ = hooks.route()
    all_url, _ = hooks.route()
    off_url, _ = hooks.route()
    types = ["referral.created", "intake.submitted"]
    urgent = await hooks.endpoint(urgent_url, types, destinations=["urgent_care"])
    await hooks.endpoint(all_url, types)
    off = await hooks.endpoint(off_url, types)
    patch = await hooks.client.patch(
        f"/v1/webhooks/endpoints/{off['id']}", json={"enabled": False}, headers=hooks.admin
    )
    assert patch.status_code == 200 and patch.json()["enabled"] is False
    to_urgent, to_pain, intake = referral_created("urgent_care"), referral_created(), intake_submitted()
    async with hooks.running():
        await hooks.publish(to_urgent, to_pain, intake)
        await hooks.messages(all_url, 3, to_urgent, to_pain, intake)
        [only] = await hooks.messages(urgent_url, 1, to_urgent, to_pain, intake)
    assert only.json()["data"]["referral_id"] == str(to_urgent.referral_id)
    # each event's deliveries are written together, so nothing more is coming
    assert len(await hooks.deliveries(urgent)) == 1
    assert await hooks.deliveries(off) == []
    assert hooks.receiver.requests(off_url) == []


async def test_a_delivery_claimed_by_a_sender_that_died_is_sent_once_its_lease_runs_out(hooks: Hooks) -> None:
    url, _ = hooks.route()
    endpoint = await hooks.endpoint(url, ["referral.created"])
    event = referral_created()
    await hooks.publish(event)
    await drain_backlog(hooks.engine, hooks.database_url)  # the consumer writes the delivery
    dying = WebhookSender(
        hooks.engine,
        SenderTuning(),
        TargetGuard.from_allow_list(["127.0.0.1"]),
        box=secret_box(hooks.settings),
    )
    [claimed] = [c for c in await dying.claim() if str(c.endpoint_id) == endpoint["id"]]
    # ...and the sender dies before sending. Its lease runs out:
    async with hooks.engine.begin() as conn:
        await conn.execute(
            text("UPDATE referral.webhook_deliveries SET leased_until = now() WHERE id = :id"),
            {"id": claimed.id},
        )
    async with hooks.running():
        [message] = await hooks.messages(url, 1, event)
        [done] = await hooks.until_deliveries(endpoint, lambda d: d["status"] == "succeeded")
    assert message.headers["webhook-id"] == str(claimed.id)
    assert done["attempts"] == 2 and len((await hooks.delivery(done["id"]))["attempt_log"]) == 1


async def test_a_new_delivery_wakes_the_sender_before_its_poll(hooks: Hooks) -> None:
    """The consumer NOTIFYs the sender when it commits deliveries: with a poll of ten minutes, a
    delivery still leaves at once (it arrives while the sender's only other way to find it, the
    poll, is minutes away)."""
    import asyncio
    import dataclasses

    from services.common.queue import QueueTuning, QueueWorker
    from services.referral.webhooks.consumer import consumer
    from tests.conftest import eventually

    url, _ = hooks.route()
    await hooks.endpoint(url, ["referral.created"])
    stop = asyncio.Event()
    worker = QueueWorker(hooks.engine, hooks.database_url, consumer, QueueTuning(poll_seconds=0.1))
    sender = WebhookSender(
        hooks.engine,
        dataclasses.replace(SenderTuning.from_settings(hooks.settings), poll_seconds=600.0),
        TargetGuard.from_allow_list(hooks.settings.webhook_allow_hosts),
        box=secret_box(hooks.settings),
    )
    tasks = [asyncio.create_task(worker.run(stop)), asyncio.create_task(sender.run(stop))]
    try:
        await eventually(lambda: sender.listening)
        await asyncio.sleep(0.2)  # past the sender's first claim: it now waits for a wake-up
        created = referral_created()
        await hooks.publish(created)
        [message] = await hooks.messages(url, 1, created)
        assert message.json()["data"]["referral_id"] == str(created.referral_id)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_a_receivers_cookie_never_rides_on_later_deliveries(hooks: Hooks) -> None:
    """Each delivery stands alone: what a receiver answers (a `Set-Cookie`, say) changes nothing
    the sender sends next."""
    url, _ = hooks.route(headers={"set-cookie": "session=from-the-receiver; Path=/"})
    await hooks.endpoint(url, ["referral.created"])
    first, second = referral_created(), referral_created()
    async with hooks.running():
        await hooks.publish(first)
        await hooks.messages(url, 1, first)
        await hooks.publish(second)
        got = await hooks.messages(url, 2, first, second)
    assert [m.answered for m in got] == [200, 200]
    assert [m.headers.get("cookie") for m in got] == [None, None]
