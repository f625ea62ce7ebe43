"""The event queue on PostgreSQL: transactional outbox, at-least-once, idempotent consumers.

Public surface: `publish` (on the caller's session, in its transaction), `Consumer` (a name and a
handler), `QueueWorker` (claims, handles, acks; wakes on NOTIFY, polls as a fallback),
`sync_subscriptions` (run by `clinic migrate`), the operator views `dead_deliveries` /
`replay_dead` (used by `clinic events` and the admin endpoints), and `run_retention`.

How it holds its promises:
- `publish` writes the event, its permanent key and one delivery per subscribed consumer with the
  caller's session, in one statement, so a rollback leaves nothing and a commit leaves everything.
  The same statement sends a `NOTIFY` on each of those consumers' own channels (`channel_for`), so
  a consumer's workers wake for its events only, and only after the commit.
- A claim is one short statement, committed at once: `FOR UPDATE SKIP LOCKED`, `attempts + 1` and
  `available_at = now() + lease` (one column is ready time, backoff and lease at once). A worker
  killed mid-handling therefore loses nothing: the lease runs out and another worker takes it; and
  since attempts count at claim time, an event that keeps killing its worker ends up dead.
- A claimed batch is handled in one transaction: the consumer's inbox rows (event ids), the
  handlers' effects and the acks commit together, so a redelivery of an applied event has no
  second effect. The ack comes first and locks the deliveries, so a slow worker keeps its batch
  past the lease; a hung one loses its transaction once idle for longer than the lease. If a
  handler fails, the batch is rolled back and handled again with a SAVEPOINT per event, so the
  failure costs only its own event a retry (with backoff) and the rest commit.
- Handlers touch only the database (no HTTP while the transaction is open: webhooks have their own
  sender) and never commit: the worker does.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import msgspec
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from services.common.clock import first_of as _first_of
from services.common.contracts.events import CONSUMERS, DEMAND, Envelope, Payload
from services.common.db.engine import libpq_url
from services.common.logging import scrub_text
from services.common.queue import metrics
from services.common.settings import Settings

log = structlog.get_logger(__name__)

CHANNEL_PREFIX = "clinic_queue."
#: The listening connection's application_name (prefix), so operators can tell it apart.
LISTENER_NAME = "clinic-queue-listener"
_RETENTION_LOCK = 7_246_391_002

Handler = Callable[[AsyncSession, Envelope], Awaitable[None]]


def channel_for(consumer: str) -> str:
    """The NOTIFY channel a consumer's workers listen on (PostgreSQL keeps 63 bytes of it)."""
    return (CHANNEL_PREFIX + consumer)[:63]


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
        SELECT ev.id, s.consumer FROM ev JOIN queue.subscriptions s ON s.event_type = ev.type AND s.wanted
        RETURNING consumer
    )
    SELECT (SELECT count(*) FROM ev) AS events,
           (SELECT count(pg_notify(left(:prefix || fan.consumer, 63), '')) FROM fan) AS deliveries
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
    transaction (ON CONFLICT DO NOTHING, no error raised inside it).
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
                "prefix": CHANNEL_PREFIX,
            },
        )
    ).one()
    if row.events == 0:
        log.info("event_publish_skipped_duplicate_key", event_type=payload.TYPE)
        return None
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


async def refresh_demand(conn: AsyncConnection | AsyncSession, consumer: str) -> None:
    """Mark which of `consumer`'s subscriptions are wanted now (its `DEMAND` query), in the
    caller's transaction.

    No event published after the caller commits may miss a subscription it turned on. So this
    first takes the subscription table exclusively: that waits for every transaction that has
    already published (and read the old state) to end, and holds off every publish until the
    caller commits; a publish waiting on the lock takes its snapshot only once it has it, so it
    sees the new state. Only the callers that change demand (webhook endpoint changes) pay this,
    for as long as their transaction lasts; at most `lock_timeout` (5 s) is spent waiting."""
    await conn.execute(text("SELECT set_config('lock_timeout', '5s', true)"))
    await conn.execute(text("LOCK TABLE queue.subscriptions IN ACCESS EXCLUSIVE MODE"))
    wanted = list((await conn.execute(text(DEMAND[consumer]))).scalars())
    await conn.execute(
        text(
            "UPDATE queue.subscriptions SET wanted = (event_type = ANY(CAST(:wanted AS text[]))) "
            "WHERE consumer = :c AND wanted IS DISTINCT FROM (event_type = ANY(CAST(:wanted AS text[])))"
        ),
        {"c": consumer, "wanted": wanted},
    )


# -- consuming -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Consumer:
    """A named consumer: `handler(session, envelope)` applies one event on the worker's session.
    It must not commit, and must not call out of the database (the transaction is open)."""

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
    #: First wait before the listener reconnects; it doubles up to `reconnect_max_seconds`
    #: (kept short: readiness waits for the listeners after a database restart).
    reconnect_seconds: float = 0.5
    reconnect_max_seconds: float = 2.0

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
        """Exponential backoff with jitter: half to all of base * 2^(attempts-1), capped."""
        step = min(self.backoff_max_seconds, self.backoff_base_seconds * 2.0 ** max(0, attempts - 1))
        return float(step * random.uniform(0.5, 1.0))


# Claim up to :limit ready deliveries of :consumer, oldest first, passing over those other workers
# hold (and :holding, the batch this worker is finishing), as one JSON array. A delivery whose last
# attempt never finished (its worker died) is marked dead here instead of handed out.
_CLAIM_CTES = """
    picked AS (
        SELECT id FROM queue.deliveries
        WHERE consumer = :consumer AND status = 'pending' AND available_at <= now()
          AND id <> ALL(CAST(:holding AS bigint[]))
        ORDER BY id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE queue.deliveries d
        SET attempts = d.attempts + CASE WHEN d.attempts >= :max_attempts THEN 0 ELSE 1 END,
            status = CASE WHEN d.attempts >= :max_attempts THEN 'dead' ELSE 'pending' END,
            available_at = now() + make_interval(secs => :lease),
            updated_at = now(),
            last_error = CASE WHEN d.attempts >= :max_attempts
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
_CLAIM = text(
    "WITH" + _CLAIM_CTES + "SELECT batch.claimed FROM batch "  # noqa: S608 (constants only)
    "CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS no_flush_wait"
)

# First statement of a batch's transaction: ack the batch (delete its deliveries, which locks them:
# no other worker can claim them while this transaction lives, lease or not), record the events in
# the consumer's inbox (`fresh`: those not applied before; the others are only acked) and, while
# the queue is busy, claim the next batch (committed with this one, before it is handled). A
# handler that hangs outside the database for longer than the lease has its transaction ended by
# PostgreSQL (idle_in_transaction_session_timeout), so the lease holds for it too.
_ACK_RECORD_AND_CLAIM = text(
    """
    WITH ack AS (
        DELETE FROM queue.deliveries WHERE id = ANY(CAST(:holding AS bigint[]))
    ), hang_limit AS (
        SELECT set_config('idle_in_transaction_session_timeout', :idle_ms, true)
    ), recorded AS (
        INSERT INTO queue.inbox (event_id, consumer)
        SELECT e, :consumer FROM unnest(CAST(:event_ids AS uuid[])) AS e, hang_limit ORDER BY e
        ON CONFLICT DO NOTHING
        RETURNING event_id
    ),"""  # noqa: S608 (constants only)
    + _CLAIM_CTES
    + "SELECT (SELECT array_agg(event_id) FROM recorded) AS fresh, (SELECT claimed FROM batch) AS claimed"
)
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
        self._idle_ms = str(max(1, round(tuning.lease_seconds * 1000)))

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

    def _claim_params(self, holding: list[int], limit: int) -> dict[str, object]:
        return {
            "consumer": self.consumer.name,
            "holding": holding,
            "limit": limit,
            "lease": self.tuning.lease_seconds,
            "max_attempts": self.tuning.max_attempts,
        }

    async def _claim(self, conn: AsyncConnection) -> list[Claimed]:
        """Lease up to a batch of ready deliveries, committed before this returns."""
        isolation = conn.default_isolation_level
        await conn.execution_options(isolation_level="AUTOCOMMIT")  # client-side: no round trip
        try:
            claimed = await conn.scalar(_CLAIM, self._claim_params([], self.tuning.batch_size))
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

    async def _handle(
        self, conn: AsyncConnection, batch: Sequence[Claimed], *, claim_next: bool
    ) -> list[Claimed] | None:
        """Apply a claimed batch in one transaction; on a handler failure, again event by event.
        Return what was claimed with it for the next round (None when nothing was)."""
        failure: tuple[Claimed, Exception] | None = None
        try:
            async with AsyncSession(bind=conn, expire_on_commit=False) as session, session.begin():
                holding = [item.delivery_id for item in batch]
                row = (
                    await session.execute(
                        _ACK_RECORD_AND_CLAIM,
                        {
                            **self._claim_params(holding, self.tuning.batch_size if claim_next else 0),
                            "event_ids": [item.envelope.id for item in batch],
                            "idle_ms": self._idle_ms,
                        },
                    )
                ).one()
                fresh = set(row.fresh or ())
                for item in batch:
                    if item.envelope.id in fresh:
                        try:
                            await self._apply(session, item)
                        except Exception as exc:
                            failure = (item, exc)
                            raise
        except Exception:
            if conn.invalidated:
                raise
            # Rolled back as a whole: again with a savepoint per event, the failed one excepted.
            await self._handle_one_by_one(conn, batch, failure)
            return None
        self._handled.inc(len(batch))
        if not claim_next:
            return None
        return _CLAIMED.decode(row.claimed) if row.claimed else []

    async def _handle_one_by_one(
        self, conn: AsyncConnection, batch: Sequence[Claimed], failure: tuple[Claimed, Exception] | None
    ) -> None:
        done: list[int] = []
        failed: list[tuple[Claimed, Exception]] = []
        async with AsyncSession(bind=conn, expire_on_commit=False) as session, session.begin():
            await session.execute(_HANG_LIMIT, {"idle_ms": self._idle_ms})
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


async def listen(
    database_url: str,
    channel: str,
    application_name: str,
    wake: asyncio.Event,
    stop: asyncio.Event,
    tuning: QueueTuning,
    *,
    on_change: Callable[[bool], None] = lambda _: None,
    log: structlog.typing.FilteringBoundLogger = log,
) -> None:
    """Until `stop`: LISTEN on `channel` on a dedicated connection (never a pooled one) and set
    `wake` on every notification (and once on each (re)connect, to catch up on anything sent while
    not listening); reconnect with backoff when the connection drops, saying so in the log (a
    warning when it is lost, info when it is back). `on_change(listening)`."""
    delay = tuning.reconnect_seconds
    reconnecting = False
    while not stop.is_set():
        conn: asyncpg.Connection | None = None
        lost = asyncio.Event()
        try:
            conn = await asyncpg.connect(
                libpq_url(database_url),
                timeout=10,
                server_settings={"application_name": application_name[:63]},
            )
            conn.add_termination_listener(_setter(lost))
            await conn.add_listener(channel, _setter(wake))
            on_change(True)
            if reconnecting:
                log.info("queue_listener_reconnected", channel=channel)
                reconnecting = False
            delay = tuning.reconnect_seconds
            wake.set()
            while not stop.is_set() and not lost.is_set():
                await _first_of(tuning.poll_seconds * 5, stop, lost)
                if not stop.is_set() and not lost.is_set():
                    await conn.execute("SELECT 1", timeout=5)  # notice a silent drop
            if lost.is_set() and not stop.is_set():
                # Terminated by the server (a restart, pg_terminate_backend): polling covers the
                # gap until the reconnect below.
                log.warning("queue_listener_lost", channel=channel, error_type="ConnectionTerminated")
                reconnecting = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("queue_listener_lost", channel=channel, error_type=type(exc).__name__)
            reconnecting = True
        finally:
            on_change(False)
            if conn is not None and not conn.is_closed():
                conn.terminate()
        if not stop.is_set():
            await _first_of(delay, stop)
            delay = min(delay * 2, tuning.reconnect_max_seconds)


def _setter(event: asyncio.Event) -> Callable[..., None]:
    """A callback (for asyncpg's listeners) that sets `event`, whatever it is called with."""
    return lambda *_: event.set()


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
    conn: AsyncConnection,
    consumers: Iterable[str] | None = None,
    *,
    limit: int = 500,
    before_id: int | None = None,
) -> list[DeadDelivery]:
    """Dead deliveries, newest first (by id); `before_id` pages on from a previous page's last id."""
    names = list(consumers) if consumers is not None else None
    rows = (
        await conn.execute(
            text(
                "SELECT d.id, d.consumer, d.event_id, e.type AS event_type, e.subject, d.attempts, "
                "d.last_error, e.occurred_at, d.updated_at FROM queue.deliveries d "
                "JOIN queue.events e ON e.id = d.event_id WHERE d.status = 'dead' "
                "AND (CAST(:names AS text[]) IS NULL OR d.consumer = ANY(CAST(:names AS text[]))) "
                "AND (CAST(:before AS bigint) IS NULL OR d.id < CAST(:before AS bigint)) "
                "ORDER BY d.id DESC LIMIT :limit"
            ),
            {"names": names, "before": before_id, "limit": limit},
        )
    ).all()
    return [DeadDelivery(**row._asdict()) for row in rows]


async def replay_dead(
    conn: AsyncConnection, delivery_id: int, consumers: Iterable[str] | None = None
) -> bool:
    """Re-queue a dead delivery with a fresh set of attempts; False if there is no such dead
    delivery (among `consumers`, when given). The caller commits; workers hear of it then."""
    names = list(consumers) if consumers is not None else None
    row = (
        await conn.execute(
            text(
                "UPDATE queue.deliveries SET status = 'pending', attempts = 0, available_at = now(), "
                "updated_at = now() WHERE id = :id AND status = 'dead' "
                "AND (CAST(:names AS text[]) IS NULL OR consumer = ANY(CAST(:names AS text[]))) "
                "RETURNING id, consumer, event_id"
            ),
            {"id": delivery_id, "names": names},
        )
    ).first()
    if row is None:
        return False
    await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel_for(row.consumer)})
    log.info("event_replayed", delivery_id=row.id, consumer=row.consumer, event_id=str(row.event_id))
    return True


async def redeliver(conn: AsyncConnection, consumer: str, event_id: uuid.UUID) -> None:
    """Owe an event to a consumer again, as a lost ack or an expired lease would (tests and
    operators); the consumer's inbox keeps an event it has applied from having a second effect."""
    await conn.execute(
        text(
            "INSERT INTO queue.deliveries (event_id, consumer) VALUES (:e, :c) "
            "ON CONFLICT (event_id, consumer) DO UPDATE SET status = 'pending', available_at = now()"
        ),
        {"e": event_id, "c": consumer},
    )
    await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel_for(consumer)})


# -- retention -------------------------------------------------------------------------------

# An event goes once it is older than the retention and no delivery of it is left (every consumer
# handled it; a dead delivery keeps it for replay). The consumers' inbox rows go with it, since
# nothing can deliver it again. Its key stays in event_keys for good.
_PRUNE = text(
    """
    WITH gone AS (
        DELETE FROM queue.events WHERE id IN (
            SELECT e.id FROM queue.events e
            WHERE e.recorded_at < now() - make_interval(hours => :hours)
              AND NOT EXISTS (SELECT 1 FROM queue.deliveries d WHERE d.event_id = e.id)
            ORDER BY e.recorded_at
            LIMIT :batch
        )
        RETURNING id
    ), applied AS (
        DELETE FROM queue.inbox i USING gone WHERE i.event_id = gone.id
    )
    SELECT count(*) FROM gone
    """
)


async def prune(engine: AsyncEngine, retention_hours: float, *, batch: int = 5000) -> int | None:
    """Delete handled events older than the retention (and their inbox rows), in transactions of
    at most `batch` events; return how many. None when another process is pruning right now."""
    removed = 0
    while True:
        async with engine.begin() as conn:
            if not await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _RETENTION_LOCK}):
                return None
            count = int(await conn.scalar(_PRUNE, {"hours": retention_hours, "batch": batch}) or 0)
        removed += count
        if count < batch:
            return removed


#: Tables whose rows churn (a claim updates a delivery, an ack deletes it). Their dead rows slow
#: every claim down until a VACUUM reclaims them, so the services vacuum them themselves once
#: `VACUUM_DEAD_ROWS` have piled up, whether autovacuum runs on the server or not.
CHURNING_TABLES = ("queue.deliveries",)
VACUUM_DEAD_ROWS = 20_000
_VACUUM_LOCK = 7_246_391_003
_DEAD_ROWS = text(
    "SELECT schemaname || '.' || relname FROM pg_stat_user_tables "
    "WHERE schemaname || '.' || relname = ANY(CAST(:tables AS text[])) AND n_dead_tup >= :dead"
)


async def vacuum_churn(
    engine: AsyncEngine, tables: Sequence[str] = CHURNING_TABLES, *, dead_rows: int = VACUUM_DEAD_ROWS
) -> list[str] | None:
    """VACUUM (ANALYZE) those of `tables` with at least `dead_rows` dead rows; return them. None
    when another process is doing it right now."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        if not await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": _VACUUM_LOCK}):
            return None
        try:
            found = await conn.execute(_DEAD_ROWS, {"tables": list(tables), "dead": dead_rows})
            due = list(found.scalars())
            for table in due:  # names from pg_stat_user_tables matching our own constants
                await conn.execute(text(f"VACUUM (ANALYZE) {table}"))
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _VACUUM_LOCK})
    return due


async def run_retention(
    engine: AsyncEngine,
    retention_hours: float,
    stop: asyncio.Event,
    *,
    interval: float = 300.0,
    vacuum_every: float = 15.0,
) -> None:
    """Until `stop`: prune every `interval` seconds, and every `vacuum_every` seconds vacuum the
    churning tables that need it. Every service may run this: one process does each job at a
    time (advisory locks), the others skip that round."""
    next_prune = 0.0
    while not stop.is_set():
        if time.monotonic() >= next_prune:
            next_prune = time.monotonic() + interval
            try:
                removed = await prune(engine, retention_hours)
                if removed:
                    log.info("queue_pruned", events=removed)
            except Exception as exc:
                log.warning("queue_prune_failed", error_type=type(exc).__name__)
        try:
            vacuumed = await vacuum_churn(engine)
            if vacuumed:
                log.info("queue_vacuumed", tables=vacuumed)
        except Exception as exc:
            log.warning("queue_vacuum_failed", error_type=type(exc).__name__)
        await _first_of(min(interval, vacuum_every), stop)
