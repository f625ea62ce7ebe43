"""The sender's bookkeeping in SQL: claiming due deliveries under a lease, recording each outcome
(the delivery, its attempt, the endpoint's health), releasing leases at shutdown, disabling endpoints."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from services.common.db.driver import Driver, Statement, driver_of

log = structlog.get_logger(__name__)

CLAIM = text(
    """
    WITH busy AS (
        SELECT * FROM unnest(CAST(:busy_ids AS uuid[]), CAST(:busy_counts AS int[])) AS b(endpoint_id, n)
    ), picked AS (
        -- Endpoint by endpoint (there are few), each one's due deliveries walked in due order on
        -- `ix_webhook_deliveries_endpoint_due`: no scan of every pending delivery.
        SELECT p.id FROM referral.webhook_endpoints e
        LEFT JOIN busy ON busy.endpoint_id = e.id
        CROSS JOIN LATERAL (
            SELECT d.id FROM referral.webhook_deliveries d
            WHERE d.endpoint_id = e.id AND d.status = 'pending' AND d.next_attempt_at <= now()
              AND (d.leased_until IS NULL OR d.leased_until <= now())
            ORDER BY d.next_attempt_at
            LIMIT greatest(:per_endpoint - coalesce(busy.n, 0), 0)
            FOR UPDATE OF d SKIP LOCKED
        ) p
        WHERE e.disabled_at IS NULL AND e.deleted_at IS NULL
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

RECORD_DELIVERY = text(
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
RECORD_SUCCESS = text(_SUCCESS_CTES + "    ) SELECT count(*) FROM delivered")  # noqa: S608 (constants)

# The same, and the next due delivery of that endpoint claimed in that statement, so a busy
# endpoint's slot goes straight on to its next delivery without a separate claim. Only
# deliveries with attempts left are chained; the main claim deals with the others. Sent on the
# driver's connection: it runs once per delivery.
RECORD_SUCCESS_AND_CLAIM_NEXT = Statement(
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
RELEASE = text(
    "UPDATE referral.webhook_deliveries SET leased_until = NULL, next_attempt_at = now(), "
    "updated_at = now(), last_error = 'the sender stopped before an answer came' "
    "WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'pending' AND leased_until IS NOT NULL"
)

RECORD_ATTEMPT = text(
    "INSERT INTO referral.webhook_attempts (delivery_id, status_code, latency_ms, error, response_excerpt) "
    "VALUES (:id, :status_code, :latency_ms, :error, :excerpt)"
)

ENDPOINT_FAILED = text(
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


#: How long a send task waits for the kept connection before taking a pooled one instead. A
#: success's statement takes about a millisecond; one held up longer (by a row lock, say) must not
#: hold up the others.
LEDGER_WAIT_SECONDS = 0.01


class Ledger:
    """Where the sender's send tasks record their successes: one pooled connection, in autocommit,
    that the sender keeps while it is busy and gives back when it is idle.

    Measured (issue 17, `docs/benchmarks.md`, session 11): checking a connection out of the pool
    for each delivery cost about a seventh of the sender's CPU per delivery. The kept connection
    takes one statement at a time; a task that cannot have it within `LEDGER_WAIT_SECONDS` takes
    a pooled connection for its statement, as every task did before. So a statement held up on
    the kept connection holds up no other task for longer than that, and the sender needs no more
    connections than it did.

    A kept connection the server closed while it was idle is replaced before a statement is sent
    on it. A statement that fails or is cancelled on it discards it (the server may have dropped
    it, or it may be mid-statement); the next one checks out a fresh connection."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._kept: tuple[AsyncConnection, Driver] | None = None
        self._turn = asyncio.Lock()

    async def _wait_turn(self) -> bool:
        """Whether the kept connection is this task's now (else it was busy for too long)."""
        if not self._turn.locked():
            await self._turn.acquire()
            return True
        try:
            async with asyncio.timeout(LEDGER_WAIT_SECONDS):
                await self._turn.acquire()
        except TimeoutError:
            return False
        return True

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Driver]:
        """A connection for one statement: the kept one, else (busy) a pooled one."""
        if not await self._wait_turn():
            async with self._autocommit.connect() as conn:
                yield await driver_of(conn)
            return
        try:
            if self._kept is not None and self._kept[1].raw.is_closed():
                await self._discard()  # the server dropped it while it was idle: nothing was sent
            if self._kept is None:
                conn = await self._autocommit.connect()
                try:
                    self._kept = (conn, await driver_of(conn))
                except BaseException:
                    await conn.close()
                    raise
            try:
                yield self._kept[1]
            except BaseException:
                await self._discard()
                raise
        finally:
            self._turn.release()

    async def _discard(self) -> None:
        kept, self._kept = self._kept, None
        if kept is not None:
            conn, _ = kept
            if not conn.invalidated:
                await conn.invalidate()
            await conn.close()

    async def give_back(self) -> None:
        """Return the kept connection to the pool (the sender is idle); unless a statement is on it."""
        if self._turn.locked() or self._kept is None:
            return
        kept, self._kept = self._kept, None
        await kept[0].close()
