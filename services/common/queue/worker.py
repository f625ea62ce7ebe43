"""Consuming: a consumer's claim, handling, acks and retries (`QueueWorker`), woken by its NOTIFY
channel (`listen`) and by a poll as a fallback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import structlog
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from services.common.clock import first_of as _first_of
from services.common.contracts.events import Envelope
from services.common.db.driver import Statement, driver_of
from services.common.logging import scrub_text
from services.common.queue import metrics
from services.common.queue.consumer import BatchHandler, Consumer, QueueTuning
from services.common.queue.listen import LISTENER_NAME, listen
from services.common.queue.publish import channel_for

log = structlog.get_logger(__name__)


# Claim up to `limit` ready deliveries of the consumer, oldest first, passing over those other
# workers hold (and :holding, the batch this worker is finishing), as one JSON array. A delivery
# whose last attempt never finished (its worker died) is marked dead here instead of handed out.
# The consumer's name and the tuning are written into the statement (`_Statements`), so its only
# parameter is :holding: PostgreSQL plans it once per connection (a generic plan) instead of at
# every execution, which for these CTEs took about as long as running them.
_CLAIM_CTES = """
    picked AS (
        SELECT id FROM queue.deliveries
        WHERE consumer = {consumer} AND status = 'pending' AND available_at <= now()
          AND id <> ALL(CAST(:holding AS bigint[]))
        ORDER BY id
        LIMIT {limit}
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE queue.deliveries d
        SET attempts = d.attempts + CASE WHEN d.attempts >= {max_attempts} THEN 0 ELSE 1 END,
            status = CASE WHEN d.attempts >= {max_attempts} THEN 'dead' ELSE 'pending' END,
            available_at = now() + make_interval(secs => {lease}),
            updated_at = now(),
            last_error = CASE WHEN d.attempts >= {max_attempts}
                THEN coalesce(d.last_error || '; then ', '')
                     || 'attempt ' || d.attempts || ' never finished (the lease expired)'
                ELSE d.last_error END
        FROM picked WHERE d.id = picked.id
        RETURNING d.id, d.event_id, d.attempts, d.status
    ), batch AS (
        SELECT json_agg(json_build_object(
            'delivery_id', c.id, 'attempts', c.attempts, 'status', c.status,
            'envelope', json_build_object('id', e.id, 'type', e.type, 'version', e.version,
                'occurred_at', e.occurred_at, 'subject', e.subject, 'data', e.payload)
        ) ORDER BY c.id)::text AS claimed
        FROM claimed c JOIN queue.events e ON e.id = c.event_id
    )
"""

# The claim on its own, in autocommit: committed before any handler starts. A lost claim is
# harmless (the delivery is simply claimed again), so it need not wait for the WAL flush; the
# handling transaction that follows flushes it anyway.
_CLAIM = (
    "WITH" + _CLAIM_CTES + "SELECT batch.claimed FROM batch "  # noqa: S608 (constants only)
    "CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS no_flush_wait"
)

# First statement of a batch's transaction: ack the batch (delete its deliveries, which locks them:
# no other worker can claim them while this transaction lives, lease or not) and record their
# events in the consumer's inbox; `fresh` names the deliveries whose events were not applied
# before (the others are only acked). A delivery already gone (acked by another worker after its
# lease ran out) records nothing and is not handled again. A handler that hangs outside the
# database for longer than the lease has its transaction ended by PostgreSQL
# (idle_in_transaction_session_timeout), so the lease holds for it too.
_ACK_AND_RECORD = """
    WITH ack AS (
        DELETE FROM queue.deliveries WHERE id = ANY(CAST(:holding AS bigint[])) RETURNING id, event_id
    ), hang_limit AS (
        SELECT set_config('idle_in_transaction_session_timeout', '{idle_ms}', true)
    ), recorded AS (
        INSERT INTO queue.inbox (event_id, consumer)
        SELECT ack.event_id, {consumer} FROM ack, hang_limit ORDER BY ack.event_id
        ON CONFLICT DO NOTHING
        RETURNING event_id
    )"""
_FRESH = "(SELECT array_agg(ack.id) FROM ack JOIN recorded r ON r.event_id = ack.event_id) AS fresh"


@dataclass(frozen=True, slots=True)
class _Statements:
    """One consumer's claim and ack statements, its name and tuning written in as literals."""

    claim: TextClause
    ack: Statement  # ack and record the batch
    ack_and_claim: Statement  # ... and, while the queue is busy, claim the next batch with it

    @classmethod
    def build(cls, consumer: str, tuning: QueueTuning) -> _Statements:
        values = {
            "consumer": "'" + consumer.replace("'", "''") + "'",  # a string literal
            "limit": int(tuning.batch_size),
            "max_attempts": int(tuning.max_attempts),
            "lease": float(tuning.lease_seconds),
            "idle_ms": tuning.hang_limit_ms,
        }
        claim_ctes = _CLAIM_CTES.format(**values)
        ack = _ACK_AND_RECORD.format(**values)
        sent = (
            Statement(f"{ack} SELECT {_FRESH}, NULL AS claimed"),
            Statement(f"{ack},{claim_ctes}SELECT {_FRESH}, (SELECT claimed FROM batch) AS claimed"),  # noqa: S608 (quoted above)
        )
        if any(statement.names != ("holding",) for statement in sent):
            raise ValueError(f"consumer name {consumer!r} reads as a statement parameter")
        return cls(claim=text(_CLAIM.format(**values)), ack=sent[0], ack_and_claim=sent[1])


# Shutdown: claimed deliveries go back to the queue at once (the claim's attempt still counts).
_RELEASE = text(
    "UPDATE queue.deliveries SET available_at = now(), updated_at = now() "
    "WHERE id = ANY(CAST(:ids AS bigint[])) AND status = 'pending'"
)
_HANG_LIMIT = text("SELECT set_config('idle_in_transaction_session_timeout', :idle_ms, true)")

_FAIL = text(
    "UPDATE queue.deliveries SET status = :status, last_error = :error, updated_at = now(), "
    "available_at = now() + make_interval(secs => :delay) WHERE id = :id"
)


class Claimed(msgspec.Struct, frozen=True):
    delivery_id: int
    attempts: int
    status: str
    envelope: Envelope


_CLAIMED = msgspec.json.Decoder(list[Claimed])


def _fresh(batch: Sequence[Claimed], fresh: list[int] | None) -> Sequence[Claimed]:
    """The deliveries of `batch` named in `fresh` (usually all of them), in the batch's order."""
    if fresh is not None and len(fresh) == len(batch):
        return batch
    named = set(fresh or ())
    return [item for item in batch if item.delivery_id in named]


class QueueWorker:
    """One consumer's worker: claim a batch, handle it, ack; sleep until NOTIFY or the poll
    interval. Run as many as you like, in as many processes: SKIP LOCKED and the inbox keep each
    event applied once per consumer.

    While there is work it keeps one pooled connection for consecutive batches (a checkout pings
    the server: three round trips), and gives it back when the queue runs dry."""

    def __init__(
        self,
        engine: AsyncEngine,
        database_url: str,
        consumer: Consumer,
        tuning: QueueTuning,
    ) -> None:
        self.engine = engine
        self.database_url = database_url
        self.consumer = consumer
        self.tuning = tuning
        self.wake = asyncio.Event()
        self.listening = False
        self.log = log.bind(consumer=consumer.name)
        self._handled = metrics.HANDLED.labels(consumer.name)
        self._retried = metrics.RETRIED.labels(consumer.name)
        self._dead = metrics.DEAD.labels(consumer.name)
        self._seconds = metrics.HANDLING_SECONDS.labels(consumer.name)
        self._statements = _Statements.build(consumer.name, tuning)

    # claims and handling --------------------------------------------------------------------

    async def drain_once(self) -> int:
        """Claim and handle one batch; return how many deliveries were claimed."""
        async with self.engine.connect() as conn:
            return await self._drain_batch(conn)

    async def drain(self, stop: asyncio.Event) -> None:
        """Handle batches until fewer than a full batch was ready (or `stop`). While batches come
        full, each one's transaction also claims the next."""
        claimed: list[Claimed] = []
        try:
            async with self.engine.connect() as conn:
                claimed = await self._claim(conn)
                while claimed:
                    busy = len(claimed) >= self.tuning.batch_size and not stop.is_set()
                    live = self._live(claimed)
                    if not live and not busy:
                        return
                    following = await self._handle(conn, live, claim_next=busy)
                    if following is None and busy:
                        following = await self._claim(conn)  # the claim made with the batch was undone
                    claimed = following or []
        except asyncio.CancelledError:
            # Cancelled at shutdown (past the grace period) mid-batch: its transaction is rolled
            # back; hand the claimed deliveries back now rather than after the lease.
            if claimed:
                await asyncio.shield(self._release([item.delivery_id for item in claimed]))
            raise

    async def _release(self, delivery_ids: list[int]) -> None:
        """Make claimed (unhandled) deliveries available again at once; log how many."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(text("SET LOCAL lock_timeout = '2s'"))
                released = await conn.execute(_RELEASE, {"ids": delivery_ids})
            self.log.warning("queue_deliveries_released", count=released.rowcount, reason="shutdown")
        except Exception as exc:  # the lease still brings them back
            self.log.warning("queue_release_failed", count=len(delivery_ids), error_type=type(exc).__name__)

    async def _drain_batch(self, conn: AsyncConnection) -> int:
        batch = self._live(await self._claim(conn))
        if batch:
            await self._handle(conn, batch, claim_next=False)
        return len(batch)

    async def _claim(self, conn: AsyncConnection) -> list[Claimed]:
        """Lease up to a batch of ready deliveries, committed before this returns."""
        isolation = conn.default_isolation_level
        await conn.execution_options(isolation_level="AUTOCOMMIT")  # client-side: no round trip
        try:
            claimed = await conn.scalar(self._statements.claim, {"holding": []})
            await conn.commit()  # ends SQLAlchemy's bookkeeping; nothing is sent in autocommit
        finally:
            await conn.execution_options(isolation_level=isolation)
        return _CLAIMED.decode(claimed) if claimed else []

    def _live(self, claimed: list[Claimed]) -> list[Claimed]:
        """The claimed deliveries to handle (those the claim found out of attempts are dead)."""
        live = []
        for item in claimed:
            if item.status == "dead":
                self._dead.inc()
                self.log.error(
                    "event_dead", delivery_id=item.delivery_id, attempts=item.attempts, cause="lease"
                )
            else:
                live.append(item)
        return live

    async def _apply(self, session: AsyncSession, item: Claimed) -> None:
        started = time.perf_counter()
        await self.consumer.handler(session, item.envelope)
        self._seconds.observe(time.perf_counter() - started)

    async def _apply_batch(
        self, session: AsyncSession, handler: BatchHandler, items: Sequence[Claimed]
    ) -> None:
        started = time.perf_counter()
        await handler(session, [item.envelope for item in items])
        each = (time.perf_counter() - started) / len(items)
        for _ in items:
            self._seconds.observe(each)

    async def _handle(
        self, conn: AsyncConnection, batch: Sequence[Claimed], *, claim_next: bool
    ) -> list[Claimed] | None:
        """Apply a claimed batch in one transaction; on a handler failure, again event by event.
        Return what was claimed with it for the next round (None when nothing was)."""
        failure: tuple[Claimed, Exception] | None = None
        try:
            async with conn.begin():
                statement = self._statements.ack_and_claim if claim_next else self._statements.ack
                driver = await driver_of(conn)  # SQLAlchemy's per-statement work cost more than ours
                row = await driver.fetchrow(statement, {"holding": [item.delivery_id for item in batch]})
                assert row is not None  # the statement always answers one row
                new = _fresh(batch, row["fresh"])
                if new:
                    # The handlers' session joins the connection's transaction: its commit only
                    # flushes, and the transaction ends with the block above.
                    async with AsyncSession(bind=conn, expire_on_commit=False) as session:
                        if self.consumer.batch_handler is not None:
                            await self._apply_batch(session, self.consumer.batch_handler, new)
                        else:
                            for item in new:
                                try:
                                    await self._apply(session, item)
                                except Exception as exc:
                                    failure = (item, exc)
                                    raise
                        await session.commit()
        except Exception:
            if conn.invalidated:
                raise
            # Rolled back as a whole: again with a savepoint per event, the failed one excepted.
            await self._handle_one_by_one(conn, batch, failure)
            return None
        self._handled.inc(len(batch))
        if not claim_next:
            return None
        return _CLAIMED.decode(row["claimed"]) if row["claimed"] else []

    async def _handle_one_by_one(
        self, conn: AsyncConnection, batch: Sequence[Claimed], failure: tuple[Claimed, Exception] | None
    ) -> None:
        done: list[int] = []
        failed: list[tuple[Claimed, Exception]] = []
        async with AsyncSession(bind=conn, expire_on_commit=False) as session, session.begin():
            await session.execute(_HANG_LIMIT, {"idle_ms": str(self.tuning.hang_limit_ms)})
            for item in batch:
                if failure is not None and item is failure[0]:
                    failed.append(failure)  # its handler has had this attempt
                    continue
                try:
                    async with session.begin_nested():
                        fresh = await session.execute(
                            text(
                                "INSERT INTO queue.inbox (event_id, consumer) VALUES (:e, :c) "
                                "ON CONFLICT DO NOTHING RETURNING 1"
                            ),
                            {"c": self.consumer.name, "e": item.envelope.id},
                        )
                        if fresh.first() is not None:
                            await self._apply(session, item)
                    done.append(item.delivery_id)
                except Exception as exc:
                    failed.append((item, exc))
            await session.execute(
                text("DELETE FROM queue.deliveries WHERE id = ANY(CAST(:ids AS bigint[]))"), {"ids": done}
            )
            for item, error in failed:
                await self._record_failure(session, item, error)
        self._handled.inc(len(done))
        for item, error in failed:
            self._count_failure(item, error)

    async def _record_failure(self, session: AsyncSession, item: Claimed, exc: Exception) -> None:
        dead = item.attempts >= self.tuning.max_attempts
        await session.execute(
            _FAIL,
            {
                "status": "dead" if dead else "pending",
                "error": scrub_text(f"{type(exc).__name__}: {exc}")[:2000],
                "delay": 0 if dead else self.tuning.backoff(item.attempts),
                "id": item.delivery_id,
            },
        )

    def _count_failure(self, item: Claimed, exc: Exception) -> None:
        dead = item.attempts >= self.tuning.max_attempts
        (self._dead if dead else self._retried).inc()
        self.log.warning(
            "event_dead" if dead else "event_retry_scheduled",
            event_id=str(item.envelope.id),
            event_type=item.envelope.type,
            attempts=item.attempts,
            error_type=type(exc).__name__,
        )

    # the loop -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(self._listen(stop), name=f"listen:{self.consumer.name}")
        try:
            while not stop.is_set():
                self.wake.clear()  # a NOTIFY arriving while we drain sets it again
                try:
                    await self.drain(stop)
                except Exception as exc:
                    # The database failed us (handler failures never get here): the leases run
                    # out and the deliveries are claimed again; try again after the poll interval.
                    self.log.error("queue_drain_failed", error_type=type(exc).__name__)
                    self.wake.clear()
                await _first_of(self.tuning.poll_seconds, self.wake, stop)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def _listen(self, stop: asyncio.Event) -> None:
        def listening(now: bool) -> None:
            self.listening = now

        await listen(
            self.database_url,
            channel_for(self.consumer.name),
            f"{LISTENER_NAME}:{self.consumer.name}",
            self.wake,
            stop,
            self.tuning,
            on_change=listening,
            log=self.log,
        )
