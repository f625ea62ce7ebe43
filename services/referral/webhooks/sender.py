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
  endpoint's health), so a delivery costs two round trips to the database besides its POST.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
import structlog
from litestar.datastructures import State
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from services.common.access.secret_box import SecretBox, SecretUnreadable, secret_box
from services.common.access.signing import signature_header
from services.common.clock import first_of
from services.common.http.web import background_loop
from services.common.queue import QueueTuning, listen
from services.common.settings import Settings
from services.referral.webhooks.ssrf import GuardedTransport, TargetError, TargetGuard

log = structlog.get_logger(__name__)

EXCERPT_CHARS = 500
_READ_BYTES = 4 * EXCERPT_CHARS
RETRY_AFTER_MAX_SECONDS = 24 * 3600.0
USER_AGENT = "clinic-webhooks/1"
#: Notified (after their commit) when new deliveries are waiting.
SENDER_CHANNEL = "clinic_webhook_sender"

ATTEMPTS = Counter("clinic_webhook_attempts", "Webhook delivery attempts, by outcome", ["outcome"])


@dataclass(frozen=True, slots=True)
class SenderTuning:
    retry_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    timeout_seconds: float = 15.0
    disable_after_days: int = 5
    concurrency_per_endpoint: int = 2
    poll_seconds: float = 2.0
    max_in_flight: int = 100

    @classmethod
    def from_settings(cls, settings: Settings) -> SenderTuning:
        return cls(
            retry_schedule=tuple(float(s) for s in settings.webhook_retry_schedule),
            timeout_seconds=settings.webhook_timeout_seconds,
            disable_after_days=settings.webhook_disable_after_days,
            concurrency_per_endpoint=max(1, settings.webhook_concurrency_per_endpoint),
            poll_seconds=settings.queue_poll_seconds,
        )

    @property
    def max_attempts(self) -> int:
        """The first attempt and one per step of the schedule."""
        return len(self.retry_schedule) + 1

    @property
    def lease_seconds(self) -> float:
        """Long enough for the slowest send and its recording."""
        return self.timeout_seconds + 60.0

    def retry_delay(self, attempts: int, retry_after: float | None = None) -> float | None:
        """Seconds until the next attempt after `attempts` failed ones; None when none is left."""
        if attempts < 1 or attempts > len(self.retry_schedule):
            return None
        delay = self.retry_schedule[attempts - 1] * random.uniform(0.8, 1.2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_MAX_SECONDS))
        return delay


# -- sending ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    status_code: int | None
    latency_ms: int
    error: str | None = None
    response_excerpt: str | None = None
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


class HttpSender(Protocol):
    """The one external edge: post a body, report what came back (never raises)."""

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> AttemptOutcome: ...


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from `Retry-After` (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class HttpxSender:
    """Posts with httpx through the SSRF-guarded transport; no redirects, a hard overall timeout."""

    def __init__(self, client: httpx.AsyncClient, timeout_seconds: float) -> None:
        self.client = client
        self.timeout_seconds = timeout_seconds

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> AttemptOutcome:
        started = time.perf_counter()

        def elapsed() -> int:
            return round((time.perf_counter() - started) * 1000)

        try:
            async with asyncio.timeout(self.timeout_seconds):
                async with self.client.stream("POST", url, content=body, headers=headers) as response:
                    excerpt = await _read_excerpt(response)
        except TimeoutError:
            return AttemptOutcome(None, elapsed(), error=f"no answer within {self.timeout_seconds:g} s")
        except TargetError as exc:
            return AttemptOutcome(None, elapsed(), error=f"refused: {exc}"[:EXCERPT_CHARS])
        except httpx.TimeoutException:
            return AttemptOutcome(None, elapsed(), error=f"no answer within {self.timeout_seconds:g} s")
        except httpx.HTTPError as exc:
            return AttemptOutcome(None, elapsed(), error=f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS])
        error = None
        if not 200 <= response.status_code < 300:
            error = f"HTTP {response.status_code}"
            if response.is_redirect:
                error += " (redirects are not followed)"
        return AttemptOutcome(
            response.status_code,
            elapsed(),
            error=error,
            response_excerpt=excerpt,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )


async def _read_excerpt(response: httpx.Response) -> str | None:
    """The first few hundred characters of the answer; the rest is never read."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _READ_BYTES:
            break
    text_ = b"".join(chunks)[:_READ_BYTES].decode("utf-8", errors="replace").strip()
    return text_[:EXCERPT_CHARS] or None


# -- claims and records ----------------------------------------------------------------------

_CLAIM = text(
    """
    WITH busy AS (
        SELECT * FROM unnest(CAST(:busy_ids AS uuid[]), CAST(:busy_counts AS int[])) AS b(endpoint_id, n)
    ), due AS (
        SELECT DISTINCT d.endpoint_id FROM referral.webhook_deliveries d
        WHERE d.status = 'pending' AND d.next_attempt_at <= now()
          AND (d.leased_until IS NULL OR d.leased_until <= now())
    ), picked AS (
        SELECT p.id FROM due
        JOIN referral.webhook_endpoints e ON e.id = due.endpoint_id
          AND e.disabled_at IS NULL AND e.deleted_at IS NULL
        LEFT JOIN busy ON busy.endpoint_id = e.id
        CROSS JOIN LATERAL (
            SELECT d.id FROM referral.webhook_deliveries d
            WHERE d.endpoint_id = e.id AND d.status = 'pending' AND d.next_attempt_at <= now()
              AND (d.leased_until IS NULL OR d.leased_until <= now())
            ORDER BY d.next_attempt_at
            LIMIT greatest(:per_endpoint - coalesce(busy.n, 0), 0)
            FOR UPDATE OF d SKIP LOCKED
        ) p
        LIMIT :limit
    ), claimed AS (
        UPDATE referral.webhook_deliveries d
        SET attempts = CASE WHEN d.attempts >= :max_attempts THEN d.attempts ELSE d.attempts + 1 END,
            leased_until = CASE WHEN d.attempts >= :max_attempts THEN NULL
                ELSE now() + make_interval(secs => :lease) END,
            updated_at = now(),
            status = CASE WHEN d.attempts >= :max_attempts THEN 'dead' ELSE 'pending' END,
            last_error = CASE WHEN d.attempts >= :max_attempts
                THEN coalesce(d.last_error || '; ', '') || 'lease expired: the sender never finished'
                ELSE d.last_error END
        FROM picked WHERE d.id = picked.id
        RETURNING d.id, d.endpoint_id, d.attempts, d.status, d.payload::text AS payload
    )
    SELECT c.id, c.endpoint_id, c.attempts, c.status, c.payload, e.url, e.secret,
           CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END AS previous_secret
    FROM claimed c JOIN referral.webhook_endpoints e ON e.id = c.endpoint_id
    """
)

_RECORD_DELIVERY = text(
    """
    UPDATE referral.webhook_deliveries d
    SET status = CASE
            WHEN :succeeded THEN 'succeeded'
            WHEN CAST(:delay AS float8) IS NULL THEN 'dead'
            WHEN EXISTS (SELECT 1 FROM referral.webhook_endpoints e WHERE e.id = d.endpoint_id
                         AND (e.disabled_at IS NOT NULL OR e.deleted_at IS NOT NULL)) THEN 'dead'
            ELSE 'pending' END,
        next_attempt_at = now() + make_interval(secs => coalesce(CAST(:delay AS float8), 0)),
        leased_until = NULL,
        last_status_code = :status_code,
        last_error = :error,
        succeeded_at = CASE WHEN :succeeded THEN now() ELSE d.succeeded_at END,
        updated_at = now()
    WHERE d.id = :id
    RETURNING d.status
    """
)

# A success in one statement: the delivery, its attempt, and the endpoint's health.
_SUCCESS_CTES = """
    WITH delivered AS (
        UPDATE referral.webhook_deliveries
        SET status = 'succeeded', next_attempt_at = now(), leased_until = NULL,
            last_status_code = :status_code, last_error = NULL, succeeded_at = now(), updated_at = now()
        WHERE id = :id
        RETURNING id
    ), attempt AS (
        INSERT INTO referral.webhook_attempts (delivery_id, status_code, latency_ms, error, response_excerpt)
        SELECT id, :status_code, :latency_ms, NULL, :excerpt FROM delivered
    ), healthy AS (
        UPDATE referral.webhook_endpoints SET first_failure_at = NULL
        WHERE id = :endpoint_id AND first_failure_at IS NOT NULL
"""
_RECORD_SUCCESS = text(_SUCCESS_CTES + "    ) SELECT count(*) FROM delivered")  # noqa: S608 (constants)

# The same, and the next due delivery of that endpoint claimed in that statement, so a busy
# endpoint's slot goes straight on to its next delivery without a separate claim. Only
# deliveries with attempts left are chained; the main claim deals with the others.
_RECORD_SUCCESS_AND_CLAIM_NEXT = text(
    _SUCCESS_CTES  # noqa: S608 (constants only)
    + """    ), picked AS (
        SELECT d.id FROM referral.webhook_deliveries d
        JOIN referral.webhook_endpoints e ON e.id = d.endpoint_id
          AND e.disabled_at IS NULL AND e.deleted_at IS NULL
        WHERE d.endpoint_id = :endpoint_id AND d.id <> :id AND d.status = 'pending'
          AND d.next_attempt_at <= now() AND (d.leased_until IS NULL OR d.leased_until <= now())
          AND d.attempts < :max_attempts AND EXISTS (SELECT 1 FROM delivered)
        ORDER BY d.next_attempt_at
        LIMIT 1
        FOR UPDATE OF d SKIP LOCKED
    ), claimed AS (
        UPDATE referral.webhook_deliveries d
        SET attempts = d.attempts + 1, leased_until = now() + make_interval(secs => :lease),
            updated_at = now()
        FROM picked WHERE d.id = picked.id
        RETURNING d.id, d.endpoint_id, d.attempts, d.payload::text AS payload
    )
    SELECT (SELECT count(*) FROM delivered) AS recorded, c.id, c.endpoint_id, c.attempts, c.payload,
           e.url, e.secret,
           CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END AS previous_secret
    FROM (SELECT 1) AS one
    LEFT JOIN claimed c ON true
    LEFT JOIN referral.webhook_endpoints e ON e.id = c.endpoint_id
    """
)

# Shutdown: sends cut short go back at once (the attempt still counts). Only leased ones: a
# send whose outcome was recorded before the cancel keeps its schedule.
_RELEASE = text(
    "UPDATE referral.webhook_deliveries SET leased_until = NULL, next_attempt_at = now(), "
    "updated_at = now(), last_error = 'the sender stopped before an answer came' "
    "WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'pending' AND leased_until IS NOT NULL"
)

_RECORD_ATTEMPT = text(
    "INSERT INTO referral.webhook_attempts (delivery_id, status_code, latency_ms, error, response_excerpt) "
    "VALUES (:id, :status_code, :latency_ms, :error, :excerpt)"
)

_ENDPOINT_FAILED = text(
    """
    UPDATE referral.webhook_endpoints SET first_failure_at = coalesce(first_failure_at, now())
    WHERE id = :id
    RETURNING disabled_at IS NULL AND now() - first_failure_at >= make_interval(days => :days) AS expired
    """
)

_DISABLE_ENDPOINT = text(
    "UPDATE referral.webhook_endpoints "
    "SET disabled_at = now(), disabled_reason = :reason, updated_at = now() "
    "WHERE id = :id AND disabled_at IS NULL RETURNING id"
)

_KILL_PENDING = text(
    """
    UPDATE referral.webhook_deliveries
    SET status = 'dead', updated_at = now(),
        last_error = left(coalesce(last_error || '; ', '') || 'endpoint disabled: ' || :reason, 2000)
    WHERE endpoint_id = :id AND status = 'pending'
    """
)


async def disable_endpoint(conn: AsyncConnection | AsyncSession, endpoint_id: uuid.UUID, reason: str) -> bool:
    """Disable the endpoint and send its pending deliveries to the dead list (for a later replay).
    False if it was disabled already."""
    row = (await conn.execute(_DISABLE_ENDPOINT, {"id": endpoint_id, "reason": reason})).first()
    if row is None:
        return False
    await conn.execute(_KILL_PENDING, {"id": endpoint_id, "reason": reason})
    log.warning("webhook_endpoint_disabled", endpoint_id=str(endpoint_id), reason=reason)
    return True


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: uuid.UUID
    endpoint_id: uuid.UUID
    attempts: int
    url: str
    secrets: list[str]
    body: bytes
    #: Why it cannot be signed (its endpoint's secret did not open); then nothing is sent and the
    #: attempt is recorded as failed with this error.
    unsigned: str | None = None


#: The attempt's error when the endpoint's secret does not open (the secret never appears).
NOT_SIGNED_ERROR = (
    "not sent: the endpoint's signing secret cannot be opened with the configured keys "
    "(CLINIC_SECRET_KEY, CLINIC_SECRET_KEY_PREVIOUS)"
)


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
        self.listening = False
        self.stopping = False
        # One statement per step: no BEGIN/COMMIT round trips (asyncpg's autocommit is client-side).
        self.autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    @classmethod
    def from_settings(cls, engine: AsyncEngine, settings: Settings) -> WebhookSender:
        return cls(
            engine,
            SenderTuning.from_settings(settings),
            TargetGuard.from_allow_list(settings.webhook_allow_hosts),
            box=secret_box(settings),
        )

    def _claimed(self, row: Any) -> ClaimedDelivery:
        """A claimed row with its endpoint's secrets opened; one that does not open is logged
        (ids only, never a secret) and marked to be recorded as a failed attempt."""
        body = row.payload.encode()
        try:
            if self.box is None:
                raise SecretUnreadable("no key configured")
            secrets = [self.box.open(row.secret)]
            if row.previous_secret:
                secrets.append(self.box.open(row.previous_secret))
        except SecretUnreadable as exc:
            log.error(
                "webhook_secret_unreadable",
                delivery_id=str(row.id),
                endpoint_id=str(row.endpoint_id),
                reason=str(exc),
            )
            return ClaimedDelivery(
                row.id, row.endpoint_id, row.attempts, row.url, [], body, unsigned=NOT_SIGNED_ERROR
            )
        return ClaimedDelivery(row.id, row.endpoint_id, row.attempts, row.url, secrets, body)

    async def claim(self) -> list[ClaimedDelivery]:
        room = self.tuning.max_in_flight - sum(self.in_flight.values())
        if room <= 0:
            return []
        busy = [(k, v) for k, v in self.in_flight.items() if v > 0]
        async with self.autocommit.connect() as conn:
            rows = (
                await conn.execute(
                    _CLAIM,
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
            claimed.append(self._claimed(row))
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
        async with self.autocommit.connect() as conn:
            row = (
                await conn.execute(
                    _RECORD_SUCCESS_AND_CLAIM_NEXT,
                    {
                        "id": item.id,
                        "endpoint_id": item.endpoint_id,
                        "status_code": outcome.status_code,
                        "latency_ms": outcome.latency_ms,
                        "excerpt": outcome.response_excerpt,
                        "max_attempts": self.tuning.max_attempts,
                        "lease": self.tuning.lease_seconds,
                    },
                )
            ).one()
        ATTEMPTS.labels(outcome="succeeded").inc()
        if row.recorded:
            log.info("webhook_delivered", delivery_id=str(item.id), endpoint_id=str(item.endpoint_id))
        if row.id is None:
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
                    _RECORD_SUCCESS,
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
                    _ENDPOINT_FAILED, {"id": item.endpoint_id, "days": self.tuning.disable_after_days}
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
                    _RECORD_DELIVERY,
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
                _RECORD_ATTEMPT,
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
        async with httpx.AsyncClient(
            transport=GuardedTransport(self.guard, limits),
            timeout=httpx.Timeout(self.tuning.timeout_seconds),
            follow_redirects=False,
            trust_env=False,
        ) as client:
            yield HttpxSender(client, self.tuning.timeout_seconds)

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
                    except Exception as exc:
                        log.error("webhook_claim_failed", error=repr(exc))
                    self.wake.clear()
                    await first_of(self.tuning.poll_seconds, self.wake, stop)
            finally:
                self.stopping = True
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
                await self._finish(grace=5.0)

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
                released = await conn.execute(_RELEASE, {"ids": delivery_ids})
            log.warning("webhook_deliveries_released", count=released.rowcount, reason="shutdown")
        except Exception as exc:  # the lease still brings them back
            log.warning("webhook_release_failed", count=len(delivery_ids), error=repr(exc))


def sender_worker(state: State) -> AbstractAsyncContextManager[None]:
    """The service's worker: the sender loop for the life of the app."""
    settings: Settings = state["clinic_settings"]
    engine: AsyncEngine = state["clinic_engine"]
    sender = WebhookSender.from_settings(engine, settings)
    return background_loop(state, "webhooks:sender", sender.run)
