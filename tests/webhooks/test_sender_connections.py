"""The sender's database connections: successes are recorded on one connection the sender keeps
while it is busy (`Ledger`). It must never hold up one endpoint's deliveries behind another's
statement, must survive the server dropping that connection, and gives it back when idle."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.common.access.secret_box import secret_box
from services.common.db.engine import asyncpg_url
from services.referral.webhooks.sender import WebhookSender
from services.referral.webhooks.ssrf import TargetGuard
from services.referral.webhooks.tuning import SenderTuning
from tests.conftest import eventually, query_value
from tests.webhooks.support import Hooks, drain_backlog, referral_created

_WAITING_FOR_A_LOCK = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def test_a_success_held_up_by_a_lock_holds_up_no_other_delivery(hooks: Hooks) -> None:
    """A success whose delivery row another transaction has locked waits for that lock. Meanwhile
    the other endpoint's deliveries still go out and are recorded, though successes share one
    kept connection."""
    hold = threading.Event()
    held_url, _ = hooks.route(hold=hold)
    other_url, _ = hooks.route()
    held = await hooks.endpoint(held_url, ["referral.created"])
    other = await hooks.endpoint(other_url, ["referral.created"])
    first = referral_created()
    async with hooks.running(webhook_timeout_seconds=60.0):
        await hooks.publish(first)
        await hooks.until_deliveries(other, lambda d: d["status"] == "succeeded")
        # The held endpoint's delivery is claimed; its POST waits for the receiver.
        [stuck] = await hooks.until_deliveries(held, lambda d: d["attempts"] == 1)
        async with hooks.engine.connect() as locker:
            await locker.begin()
            await locker.execute(
                text("SELECT 1 FROM referral.webhook_deliveries WHERE id = :id FOR UPDATE"),
                {"id": stuck["id"]},
            )
            hold.set()  # the receiver answers: the success's statement now waits for the lock
            await eventually(
                lambda: query_value(hooks.engine, _WAITING_FOR_A_LOCK), what="a statement waiting"
            )
            later = [referral_created() for _ in range(3)]
            await hooks.publish(*later)
            await hooks.messages(other_url, 3, *later)
            await hooks.until_deliveries(other, lambda d: d["status"] == "succeeded", count=4)
            assert (await hooks.delivery(stuck["id"]))["status"] == "pending"  # still held up
            await locker.rollback()
        await hooks.until_deliveries(held, lambda d: d["status"] == "succeeded", count=4)
    assert [m.answered for m in hooks.receiver.requests(held_url)] == [200] * 4


async def test_a_connection_the_server_dropped_costs_no_delivery(hooks: Hooks) -> None:
    """The server drops the sender's kept connection while the sender is busy (another endpoint
    hangs): the next success is recorded on a fresh connection at once, not after its lease."""
    hold = threading.Event()
    hanging_url, _ = hooks.route(hold=hold)
    healthy_url, _ = hooks.route()
    await hooks.endpoint(hanging_url, ["referral.created"])
    healthy = await hooks.endpoint(healthy_url, ["referral.created"])
    first = referral_created()
    async with hooks.running(webhook_timeout_seconds=60.0):
        await hooks.publish(first)
        await hooks.until_deliveries(healthy, lambda d: d["status"] == "succeeded")
        kept = (
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query LIKE '%WITH delivered AS%'"
        )
        pid = await query_value(hooks.engine, kept)
        assert await query_value(hooks.engine, "SELECT pg_terminate_backend(:p)", p=pid)
        later = referral_created()
        await hooks.publish(later)

        async def both_recorded() -> bool:
            return sum(d["status"] == "succeeded" for d in await hooks.deliveries(healthy)) == 2

        # Well within the 120 s lease a failed record would wait for.
        await eventually(both_recorded, within=10, what="the next success recorded")
        hold.set()


async def test_the_sender_gives_its_connection_back_when_idle(hooks: Hooks) -> None:
    url, _ = hooks.route()
    endpoint = await hooks.endpoint(url, ["referral.created"])
    events = [referral_created() for _ in range(20)]
    await hooks.publish(*events)
    await drain_backlog(hooks.engine, hooks.database_url)  # the consumer writes the deliveries
    pooled = create_async_engine(asyncpg_url(hooks.database_url), pool_size=2, max_overflow=0)
    stop = asyncio.Event()
    sender = WebhookSender(
        pooled,
        dataclasses.replace(SenderTuning.from_settings(hooks.settings), poll_seconds=0.1),
        TargetGuard.from_allow_list(hooks.settings.webhook_allow_hosts),
        box=secret_box(hooks.settings),
    )
    task = asyncio.create_task(sender.run(stop))
    try:
        await hooks.until_deliveries(endpoint, lambda d: d["status"] == "succeeded", count=20)
        await eventually(lambda: pooled.pool.checkedout() == 0, what="every connection back in the pool")  # type: ignore[attr-defined]
    finally:
        stop.set()
        await task
        await pooled.dispose()
