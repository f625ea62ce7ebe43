"""The event queue on PostgreSQL: transactional outbox, at-least-once, idempotent consumers.

Public surface: `publish` (on the caller's session, in its transaction), `Consumer` (a name and a
handler), `QueueWorker` (claims, handles, acks; wakes on NOTIFY, polls as a fallback),
`sync_subscriptions` (run by `clinic migrate`), and the operator views `dead_deliveries` /
`replay_dead`.

How it holds its promises:
- `publish` writes the event, its permanent key and one delivery per subscribed consumer with the
  caller's session, so a rollback leaves nothing and a commit leaves everything. `NOTIFY` is sent
  in that same transaction, so listeners hear of it only after the commit.
- A claim is its own short transaction: `FOR UPDATE SKIP LOCKED`, `attempts + 1` and
  `available_at = now() + lease` (one column is ready time, backoff and lease at once). A worker
  killed mid-handling therefore loses nothing: the lease runs out and another worker takes it; and
  since attempts count at claim time, an event that keeps killing its worker ends up dead.
- The handler's effect, the consumer's inbox row (event id) and the ack commit together, so a
  redelivery of an applied event has no second effect. Handlers only touch the database: no HTTP
  while the transaction is open (webhooks have their own sender).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import msgspec
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from services.common.db import libpq_url
from services.common.events import CONSUMERS, Envelope, Payload
from services.common.settings import Settings

log = structlog.get_logger(__name__)

CHANNEL = "clinic_queue"
_NOTIFIED_KEY = "clinic_queue_notified_tx"

Handler = Callable[[AsyncSession, Envelope], Awaitable[None]]


# -- publishing ------------------------------------------------------------------------------

_PUBLISH = text(
    """
    WITH key AS (
        INSERT INTO queue.event_keys (event_key, event_id)
        SELECT CAST(:key AS text), CAST(:id AS uuid) WHERE CAST(:key AS text) IS NOT NULL
        ON CONFLICT (event_key) DO NOTHING
        RETURNING event_id
    ), ev AS (
        INSERT INTO queue.events (id, type, version, subject, payload, occurred_at, event_key)
        SELECT CAST(:id AS uuid), :type, :version, CAST(:subject AS uuid), CAST(:payload AS jsonb),
               :occurred_at, CAST(:key AS text)
        WHERE CAST(:key AS text) IS NULL OR EXISTS (SELECT 1 FROM key)
        RETURNING id, type
    ), fan AS (
        INSERT INTO queue.deliveries (event_id, consumer)
        SELECT ev.id, s.consumer FROM ev JOIN queue.subscriptions s ON s.event_type = ev.type
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM ev) AS events, (SELECT count(*) FROM fan) AS deliveries
    """
)


async def publish(
    session: AsyncSession,
    payload: Payload,
    *,
    subject: uuid.UUID,
    key: str | None = None,
    occurred_at: datetime | None = None,
) -> uuid.UUID | None:
    """Record `payload` as an event in the caller's transaction; return its id.

    With a `key`, publishing is idempotent for good: a key seen before (even long ago, after the
    event itself was pruned) publishes nothing and returns None, without disturbing the caller's
    transaction.
    """
    event_id = uuid.uuid4()
    row = (
        await session.execute(
            _PUBLISH,
            {
                "id": event_id,
                "type": payload.TYPE,
                "version": payload.VERSION,
                "subject": subject,
                "payload": msgspec.json.encode(payload).decode(),
                "occurred_at": occurred_at or datetime.now(UTC),
                "key": key,
            },
        )
    ).one()
    if row.events == 0:
        log.info("event_publish_skipped_duplicate_key", event_type=payload.TYPE)
        return None
    transaction = session.get_transaction()
    if session.info.get(_NOTIFIED_KEY) is not transaction:
        # One NOTIFY per transaction; PostgreSQL delivers it only if the transaction commits.
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
        session.info[_NOTIFIED_KEY] = transaction
    return event_id


async def sync_subscriptions(
    conn: AsyncConnection, consumers: Mapping[str, Iterable[str]] = CONSUMERS
) -> None:
    """Make the subscription table say what the code says (run by `clinic migrate`)."""
    for consumer, types in consumers.items():
        for event_type in types:
            await conn.execute(
                text(
                    "INSERT INTO queue.subscriptions (consumer, event_type) VALUES (:c, :t) "
                    "ON CONFLICT DO NOTHING"
                ),
                {"c": consumer, "t": event_type},
            )


# -- consuming -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Consumer:
    name: str
    handler: Handler


@dataclass(frozen=True, slots=True)
class QueueTuning:
    batch_size: int = 50
    lease_seconds: float = 60.0
    poll_seconds: float = 2.0
    max_attempts: int = 8
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> QueueTuning:
        return cls(
            batch_size=settings.queue_batch_size,
            lease_seconds=settings.queue_lease_seconds,
            poll_seconds=settings.queue_poll_seconds,
            max_attempts=settings.queue_max_attempts,
            backoff_base_seconds=settings.queue_backoff_base_seconds,
            backoff_max_seconds=settings.queue_backoff_max_seconds,
        )

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with jitter (half to full of the step, capped)."""
        step = min(self.backoff_max_seconds, self.backoff_base_seconds * 2.0 ** max(0, attempts - 1))
        return float(step * random.uniform(0.5, 1.0))


_CLAIM = text(
    """
    WITH picked AS (
        SELECT id FROM queue.deliveries
        WHERE consumer = :consumer AND status = 'pending' AND available_at <= now()
        ORDER BY available_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE queue.deliveries d
        SET attempts = d.attempts + 1,
            available_at = now() + make_interval(secs => :lease),
            updated_at = now(),
            status = CASE WHEN d.attempts >= :max_attempts THEN 'dead' ELSE 'pending' END,
            last_error = CASE WHEN d.attempts >= :max_attempts
                THEN coalesce(d.last_error || '; ', '') || 'lease expired: the handler never finished'
                ELSE d.last_error END
        FROM picked WHERE d.id = picked.id
        RETURNING d.id, d.event_id, d.attempts, d.status
    )
    SELECT c.id AS delivery_id, c.attempts, c.status, e.id, e.type, e.version, e.occurred_at,
           e.subject, e.payload::text AS payload
    FROM claimed c JOIN queue.events e ON e.id = c.event_id
    ORDER BY e.occurred_at
    """
)


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: int
    attempts: int
    envelope: Envelope


class QueueWorker:
    """One consumer's worker: claim a batch, handle each delivery, ack; sleep until NOTIFY or
    the poll interval. Run as many as you like, in as many processes: SKIP LOCKED and the inbox
    keep each event applied once per consumer."""

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
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        self.wake = asyncio.Event()
        self.listening = False
        self.log = log.bind(consumer=consumer.name)

    # claims and handling --------------------------------------------------------------------

    async def claim(self) -> list[Claimed]:
        async with self.engine.begin() as conn:
            rows = (
                await conn.execute(
                    _CLAIM,
                    {
                        "consumer": self.consumer.name,
                        "limit": self.tuning.batch_size,
                        "lease": self.tuning.lease_seconds,
                        "max_attempts": self.tuning.max_attempts,
                    },
                )
            ).all()
        claimed = []
        for row in rows:
            if row.status == "dead":
                self.log.error("event_dead", event_id=str(row.id), attempts=row.attempts - 1)
                continue
            envelope = Envelope(
                id=row.id,
                type=row.type,
                version=row.version,
                occurred_at=row.occurred_at,
                subject=row.subject,
                data=msgspec.json.decode(row.payload),
            )
            claimed.append(Claimed(row.delivery_id, row.attempts, envelope))
        return claimed

    async def handle(self, item: Claimed) -> bool:
        """Apply one delivery; True when acked (applied now or before)."""
        started = time.perf_counter()
        try:
            async with self.sessionmaker() as session, session.begin():
                fresh = (
                    await session.execute(
                        text(
                            "INSERT INTO queue.inbox (consumer, event_id) VALUES (:c, :e) "
                            "ON CONFLICT DO NOTHING RETURNING 1"
                        ),
                        {"c": self.consumer.name, "e": item.envelope.id},
                    )
                ).first()
                if fresh is not None:
                    await self.consumer.handler(session, item.envelope)
                await session.execute(
                    text(
                        "UPDATE queue.deliveries SET status = 'done', updated_at = now(), "
                        "last_error = NULL WHERE id = :id"
                    ),
                    {"id": item.delivery_id},
                )
        except Exception as exc:
            await self._failed(item, exc)
            return False
        self.log.debug(
            "event_handled",
            event_id=str(item.envelope.id),
            event_type=item.envelope.type,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return True

    async def _failed(self, item: Claimed, exc: Exception) -> None:
        dead = item.attempts >= self.tuning.max_attempts
        error = f"{type(exc).__name__}: {exc}"[:2000]
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE queue.deliveries SET status = :status, last_error = :error, updated_at = now(), "
                    "available_at = now() + make_interval(secs => :delay) WHERE id = :id"
                ),
                {
                    "status": "dead" if dead else "pending",
                    "error": error,
                    "delay": 0 if dead else self.tuning.backoff(item.attempts),
                    "id": item.delivery_id,
                },
            )
        event = "event_dead" if dead else "event_retry_scheduled"
        self.log.warning(
            event,
            event_id=str(item.envelope.id),
            event_type=item.envelope.type,
            attempts=item.attempts,
            error_type=type(exc).__name__,
        )

    async def drain_once(self) -> int:
        """Claim and handle one batch; return how many deliveries were claimed."""
        batch = await self.claim()
        for item in batch:
            await self.handle(item)
        return len(batch)

    # the loop -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(self._listen(stop), name=f"listen:{self.consumer.name}")
        try:
            while not stop.is_set():
                try:
                    claimed = await self.drain_once()
                except Exception as exc:
                    self.log.error("queue_claim_failed", error=repr(exc))
                    claimed = 0
                if claimed >= self.tuning.batch_size:
                    continue  # more may be waiting
                self.wake.clear()
                waiters = {asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())}
                _, pending = await asyncio.wait(
                    waiters, timeout=self.tuning.poll_seconds, return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in pending:
                    waiter.cancel()
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def _listen(self, stop: asyncio.Event) -> None:
        """LISTEN on a dedicated connection (never a pooled one); reconnect when it drops."""
        delay = 0.5
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(libpq_url(self.database_url), timeout=10)
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())  # type: ignore[misc]
                await conn.add_listener(CHANNEL, lambda *_: self.wake.set())
                self.listening = True
                delay = 0.5
                self.wake.set()  # catch up on anything published while we were not listening
                while not stop.is_set() and not lost.is_set():
                    await asyncio.wait(
                        {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())},
                        timeout=self.tuning.poll_seconds * 5,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if not stop.is_set() and not lost.is_set():
                        await conn.execute("SELECT 1", timeout=5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.warning("queue_listener_lost", error_type=type(exc).__name__)
            finally:
                self.listening = False
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            if not stop.is_set():
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


# -- operators -------------------------------------------------------------------------------


class DeadDelivery(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    consumer: str
    event_id: uuid.UUID
    event_type: str
    subject: uuid.UUID
    attempts: int
    last_error: str | None
    occurred_at: datetime
    updated_at: datetime


async def dead_deliveries(
    conn: AsyncConnection, consumers: Iterable[str] | None = None
) -> list[DeadDelivery]:
    names = list(consumers) if consumers is not None else None
    rows = (
        await conn.execute(
            text(
                "SELECT d.id, d.consumer, d.event_id, e.type AS event_type, e.subject, d.attempts, "
                "d.last_error, e.occurred_at, d.updated_at FROM queue.deliveries d "
                "JOIN queue.events e ON e.id = d.event_id WHERE d.status = 'dead' "
                "AND (CAST(:names AS text[]) IS NULL OR d.consumer = ANY(CAST(:names AS text[]))) "
                "ORDER BY d.updated_at DESC LIMIT 500"
            ),
            {"names": names},
        )
    ).all()
    return [DeadDelivery(**row._asdict()) for row in rows]


async def replay_dead(
    conn: AsyncConnection, delivery_id: int, consumers: Iterable[str] | None = None
) -> bool:
    """Re-queue a dead delivery (attempts reset); False if there is no such dead delivery."""
    names = list(consumers) if consumers is not None else None
    row = (
        await conn.execute(
            text(
                "UPDATE queue.deliveries SET status = 'pending', attempts = 0, available_at = now(), "
                "updated_at = now() WHERE id = :id AND status = 'dead' "
                "AND (CAST(:names AS text[]) IS NULL OR consumer = ANY(CAST(:names AS text[]))) "
                "RETURNING id"
            ),
            {"id": delivery_id, "names": names},
        )
    ).first()
    if row is not None:
        await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
    return row is not None


def consumer_tasks(
    engine: AsyncEngine, database_url: str, consumers: Iterable[Consumer], settings: Settings
) -> list[QueueWorker]:
    tuning = QueueTuning.from_settings(settings)
    return [QueueWorker(engine, database_url, c, tuning) for c in consumers]
