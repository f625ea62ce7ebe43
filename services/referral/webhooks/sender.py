"""The webhook sender: claims due deliveries, posts them signed, records every attempt.

How it keeps its promises:
- No HTTP inside a transaction. A claim is one short transaction (`FOR UPDATE SKIP LOCKED`,
  `attempts + 1`, a lease in `leased_until`); the POST happens with no transaction open; its
  outcome is recorded in another short one. A sender killed mid-send loses nothing: the lease
  runs out and any replica takes the delivery again (at-least-once; subscribers dedupe on
  `webhook-id`, which is the delivery's id and the same on every attempt).
- A slow or failing endpoint never delays the others. Each send is its own task; the loop never
  awaits a send. A claim takes, per endpoint, only as many deliveries as that endpoint has free
  slots (`webhook_concurrency_per_endpoint` minus what this process has in flight there), so a
  hanging endpoint holds at most its own slots and nothing queues behind it.
- Success is a 2xx within the timeout, redirects not followed. Otherwise the next attempt is
  scheduled by `webhook_retry_schedule` (with jitter, and no sooner than a `Retry-After`); past
  the schedule the delivery is dead. `410 Gone` disables the endpoint at once; an endpoint whose
  every attempt has failed for `webhook_disable_after_days` is disabled. A disabled endpoint's
  pending deliveries go dead, to be replayed once it is fixed and enabled again.
- Time is the database's (`now()`), one clock for every replica.
- New deliveries wake the sender at once: the webhook consumer NOTIFYs `SENDER_CHANNEL` when it
  commits some; the poll (`CLINIC_QUEUE_POLL_SECONDS`) is the fallback for retries coming due and
  a lost listening connection.
- Each step is one statement in autocommit (a claim; a success recorded with its attempt and the
  endpoint's health, and the endpoint's next delivery claimed), so a busy endpoint's delivery
  costs one round trip to the database besides its POST. Successes are recorded on a connection
  the sender keeps while it is busy (`Ledger`), not one checked out of the pool per delivery.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import structlog
from litestar.datastructures import State
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.access.secret_box import SecretBox, SecretUnreadable, secret_box
from services.common.access.signing import signature_header
from services.common.clock import first_of
from services.common.http.web import background_loop
from services.common.queue import QueueTuning, listen
from services.common.settings import Settings
from services.referral.webhooks.bookkeeping import (
    CLAIM,
    ENDPOINT_FAILED,
    NOT_SIGNED_ERROR,
    RECORD_ATTEMPT,
    RECORD_DELIVERY,
    RECORD_SUCCESS,
    RECORD_SUCCESS_AND_CLAIM_NEXT,
    RELEASE,
    ClaimedDelivery,
    Ledger,
    disable_endpoint,
)
from services.referral.webhooks.posting import AttemptOutcome, HttpSender, HttpxSender
from services.referral.webhooks.ssrf import GuardedTransport, TargetGuard
from services.referral.webhooks.tuning import SenderTuning

log = structlog.get_logger(__name__)

USER_AGENT = "clinic-webhooks/1"
#: Notified (after their commit) when new deliveries are waiting.
SENDER_CHANNEL = "clinic_webhook_sender"

#: At most this many opened secrets are kept (then the lot is dropped and opened again).
OPENED_SECRETS_KEPT = 1000

ATTEMPTS = Counter("clinic_webhook_attempts", "Webhook delivery attempts, by outcome", ["outcome"])


class WebhookSender:
    """Claims, sends and records; `run(stop)` is the loop a service runs as a worker."""

    def __init__(
        self,
        engine: AsyncEngine,
        tuning: SenderTuning,
        guard: TargetGuard,
        http: HttpSender | None = None,
        *,
        box: SecretBox | None = None,
    ) -> None:
        self.engine = engine
        #: Opens the endpoints' sealed secrets (None: no key configured; nothing can be signed).
        self.box = box
        self.tuning = tuning
        self.guard = guard
        self.http = http
        self.in_flight: dict[uuid.UUID, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        #: The delivery each send task holds the lease of (released at once if cancelled).
        self.sending: dict[asyncio.Task[None], uuid.UUID] = {}
        self.wake = asyncio.Event()
        #: Endpoint secrets opened so far, by their sealed value.
        self._opened: dict[str, str] = {}
        self.listening = False
        self.stopping = False
        # One statement per step: no BEGIN/COMMIT round trips (asyncpg's autocommit is client-side).
        self.autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.ledger = Ledger(engine)

    @classmethod
    def from_settings(cls, engine: AsyncEngine, settings: Settings) -> WebhookSender:
        return cls(
            engine,
            SenderTuning.from_settings(settings),
            TargetGuard.from_allow_list(settings.webhook_allow_hosts),
            box=secret_box(settings),
        )

    def _open(self, sealed: str) -> str:
        """An endpoint's secret opened, once per sealed value (decrypting it cost a third of a
        millisecond per delivery); a rotated secret is a new sealed value."""
        if (opened := self._opened.get(sealed)) is None:
            if self.box is None:
                raise SecretUnreadable("no key configured")
            if len(self._opened) >= OPENED_SECRETS_KEPT:
                self._opened.clear()
            opened = self._opened[sealed] = self.box.open(sealed)
        return opened

    def _claimed(self, row: Any) -> ClaimedDelivery:
        """A claimed row (by column name) with its endpoint's secrets opened; one that does not
        open is logged (ids only, never a secret) and marked to be recorded as a failed attempt."""
        body = row["payload"].encode()
        ids = (row["id"], row["endpoint_id"], row["attempts"], row["url"])
        try:
            secrets = [self._open(row["secret"])]
            if row["previous_secret"]:
                secrets.append(self._open(row["previous_secret"]))
        except SecretUnreadable as exc:
            log.error(
                "webhook_secret_unreadable",
                delivery_id=str(row["id"]),
                endpoint_id=str(row["endpoint_id"]),
                reason=str(exc),
            )
            return ClaimedDelivery(*ids, [], body, unsigned=NOT_SIGNED_ERROR)
        return ClaimedDelivery(*ids, secrets, body)

    async def claim(self) -> list[ClaimedDelivery]:
        room = self.tuning.max_in_flight - sum(self.in_flight.values())
        if room <= 0:
            return []
        busy = [(k, v) for k, v in self.in_flight.items() if v > 0]
        async with self.autocommit.connect() as conn:
            rows = (
                await conn.execute(
                    CLAIM,
                    {
                        "busy_ids": [k for k, _ in busy],
                        "busy_counts": [v for _, v in busy],
                        "per_endpoint": self.tuning.concurrency_per_endpoint,
                        "limit": room,
                        "lease": self.tuning.lease_seconds,
                        "max_attempts": self.tuning.max_attempts,
                    },
                )
            ).all()
        claimed = []
        for row in rows:
            if row.status == "dead":
                log.error("webhook_dead", delivery_id=str(row.id), endpoint_id=str(row.endpoint_id))
                continue
            claimed.append(self._claimed(row._mapping))
        return claimed

    def headers(self, item: ClaimedDelivery) -> dict[str, str]:
        msg_id = str(item.id)
        timestamp = int(time.time())
        return {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(item.secrets, msg_id, timestamp, item.body),
        }

    async def _post(self, item: ClaimedDelivery, http: HttpSender) -> AttemptOutcome:
        if item.unsigned is not None:
            return AttemptOutcome(None, 0, error=item.unsigned)
        return await http.post(item.url, self.headers(item), item.body)

    async def deliver(self, item: ClaimedDelivery, http: HttpSender) -> AttemptOutcome:
        """One attempt: post (no transaction open), then record the outcome."""
        outcome = await self._post(item, http)
        await self.record(item, outcome)
        return outcome

    async def _deliver_and_claim_next(
        self, item: ClaimedDelivery, http: HttpSender
    ) -> ClaimedDelivery | None:
        """One attempt; after a success, the endpoint's next due delivery (claimed), if any."""
        outcome = await self._post(item, http)
        if not outcome.succeeded or self.stopping:
            await self.record(item, outcome)
            return None
        values = {
            "id": item.id,
            "endpoint_id": item.endpoint_id,
            "status_code": outcome.status_code,
            "latency_ms": outcome.latency_ms,
            "excerpt": outcome.response_excerpt,
            "max_attempts": self.tuning.max_attempts,
            "lease": self.tuning.lease_seconds,
        }
        async with self.ledger.driver() as driver:
            row = await driver.fetchrow(RECORD_SUCCESS_AND_CLAIM_NEXT, values)
        assert row is not None  # the statement always answers one row
        ATTEMPTS.labels(outcome="succeeded").inc()
        if row["recorded"]:
            log.info("webhook_delivered", delivery_id=str(item.id), endpoint_id=str(item.endpoint_id))
        if row["id"] is None:
            return None
        return self._claimed(row)

    async def record(self, item: ClaimedDelivery, outcome: AttemptOutcome) -> None:
        delay = (
            None
            if outcome.succeeded or outcome.gone
            else self.tuning.retry_delay(item.attempts, outcome.retry_after)
        )
        bound = log.bind(
            delivery_id=str(item.id),
            endpoint_id=str(item.endpoint_id),
            attempt=item.attempts,
            status_code=outcome.status_code,
            ms=outcome.latency_ms,
        )
        if outcome.succeeded:
            async with self.autocommit.connect() as conn:
                recorded = await conn.scalar(
                    RECORD_SUCCESS,
                    {
                        "id": item.id,
                        "endpoint_id": item.endpoint_id,
                        "status_code": outcome.status_code,
                        "latency_ms": outcome.latency_ms,
                        "excerpt": outcome.response_excerpt,
                    },
                )
            ATTEMPTS.labels(outcome="succeeded").inc()
            if recorded:  # else the endpoint (and with it the delivery) was deleted meanwhile
                bound.info("webhook_delivered")
            return
        async with self.engine.begin() as conn:
            expired = (
                await conn.execute(
                    ENDPOINT_FAILED, {"id": item.endpoint_id, "days": self.tuning.disable_after_days}
                )
            ).scalar()
            if outcome.gone:
                await disable_endpoint(conn, item.endpoint_id, "the receiver answered 410 Gone")
            elif expired:
                await disable_endpoint(
                    conn,
                    item.endpoint_id,
                    f"every attempt failed for {self.tuning.disable_after_days} days",
                )
            status = (
                await conn.execute(
                    RECORD_DELIVERY,
                    {
                        "id": item.id,
                        "succeeded": outcome.succeeded,
                        "delay": delay,
                        "status_code": outcome.status_code,
                        "error": outcome.error,
                    },
                )
            ).scalar()
            if status is None:  # the endpoint (and with it the delivery) was deleted meanwhile
                return
            await conn.execute(
                RECORD_ATTEMPT,
                {
                    "id": item.id,
                    "status_code": outcome.status_code,
                    "latency_ms": outcome.latency_ms,
                    "error": outcome.error,
                    "excerpt": outcome.response_excerpt,
                },
            )
        ATTEMPTS.labels(outcome="failed").inc()
        if status == "dead":
            bound.warning("webhook_dead", error=outcome.error)
        else:
            bound.info("webhook_retry_scheduled", error=outcome.error, delay_seconds=round(delay or 0, 1))

    # the loop -------------------------------------------------------------------------------

    def _start(self, item: ClaimedDelivery, http: HttpSender) -> None:
        self.in_flight[item.endpoint_id] = self.in_flight.get(item.endpoint_id, 0) + 1

        async def attempt() -> None:
            current: ClaimedDelivery | None = item
            me = asyncio.current_task()
            try:
                while current is not None:
                    if me is not None:  # a chained claim moves the lease this task holds
                        self.sending[me] = current.id
                    current = await self._deliver_and_claim_next(current, http)
            except Exception as exc:  # the lease brings it back; the loop must go on
                failed = current.id if current is not None else item.id
                log.error("webhook_attempt_crashed", delivery_id=str(failed), error=repr(exc))
            finally:
                left = self.in_flight.get(item.endpoint_id, 1) - 1
                if left > 0:
                    self.in_flight[item.endpoint_id] = left
                else:
                    self.in_flight.pop(item.endpoint_id, None)
                self.wake.set()

        task = asyncio.create_task(attempt(), name=f"webhook:{item.id}")
        self.tasks.add(task)
        self.sending[task] = item.id
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.sending.pop(task, None)

    @asynccontextmanager
    async def _http(self) -> AsyncIterator[HttpSender]:
        if self.http is not None:
            yield self.http
            return
        limits = httpx.Limits(max_connections=self.tuning.max_in_flight, keepalive_expiry=30)
        async with GuardedTransport(self.guard, limits) as transport:
            yield HttpxSender(transport, self.tuning.timeout_seconds)

    def _listening(self, now: bool) -> None:
        self.listening = now

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(
            listen(
                self.engine.url.render_as_string(hide_password=False),
                SENDER_CHANNEL,
                "clinic-webhook-sender",
                self.wake,
                stop,
                QueueTuning(poll_seconds=self.tuning.poll_seconds),
                on_change=self._listening,
            ),
            name="listen:webhooks",
        )
        async with self._http() as http:
            try:
                while not stop.is_set():
                    try:
                        for item in await self.claim():
                            self._start(item, http)
                        if not self.in_flight:  # idle: the pool gets the kept connection back
                            await self.ledger.give_back()
                    except Exception as exc:
                        log.error("webhook_claim_failed", error=repr(exc))
                    self.wake.clear()
                    await first_of(self.tuning.poll_seconds, self.wake, stop)
            finally:
                self.stopping = True
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
                await self._finish(grace=5.0)
                await self.ledger.give_back()

    async def _finish(self, grace: float) -> None:
        """Let sends in flight finish briefly; cancel the rest and release their leases at once,
        so a restarted sender (or another replica) sends them again without waiting the lease out.
        The receiver may then see the same `webhook-id` twice: it dedupes on it."""
        if not self.tasks:
            return
        _, pending = await asyncio.wait(set(self.tasks), timeout=grace)
        held = [self.sending[task] for task in pending if task in self.sending]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if held:
            await self._release(held)

    async def _release(self, delivery_ids: list[uuid.UUID]) -> None:
        try:
            async with self.engine.begin() as conn:
                released = await conn.execute(RELEASE, {"ids": delivery_ids})
            log.warning("webhook_deliveries_released", count=released.rowcount, reason="shutdown")
        except Exception as exc:  # the lease still brings them back
            log.warning("webhook_release_failed", count=len(delivery_ids), error=repr(exc))


def sender_worker(state: State) -> AbstractAsyncContextManager[None]:
    """The service's worker: the sender loop for the life of the app."""
    settings: Settings = state["clinic_settings"]
    engine: AsyncEngine = state["clinic_engine"]
    sender = WebhookSender.from_settings(engine, settings)
    return background_loop(state, "webhooks:sender", sender.run)
