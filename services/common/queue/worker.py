"""Consuming: a consumer's claim, handling, acks and retries (`QueueWorker`), woken by its NOTIFY
channel (`listen`) and by a poll as a fallback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from services.common.clock import first_of as _first_of
from services.common.contracts.events import Envelope
from services.common.db.driver import Driver, Statement, driver_of
from services.common.logging import scrub_text
from services.common.queue import metrics
from services.common.queue.consumer import BatchHandler, Consumer, QueueTuning
from services.common.queue.listen import LISTENER_NAME, listen
from services.common.queue.publish import channel_for

log = structlog.get_logger(__name__)


# Take up to `limit` ready deliveries of the consumer, oldest first, passing over those other
# workers are taking (`queue.ready_deliveries`: SKIP LOCKED, by index whatever the statistics; a
# row another worker took meanwhile is gone by the time its lock is free, and is passed over too),
# and move them into one claim row. The claim commits before any handler runs, so a worker that
# dies mid-batch leaves it behind: it lapses after the lease, and the deliveries are put back with
# the attempt counted (`_LAPSED`).
# The claim's arrays line up (one aggregation pass feeds each aggregate the rows in one order).
# The batch comes back as one JSON array, built by concatenation (every column is NOT NULL;
# `to_json` quotes the type and the time as `json_build_object` would, for less work).
# The consumer's name and the tuning are written into the statement (`_Statements`), so it has no
# parameter: PostgreSQL plans it once per connection (a generic plan) instead of at every
# execution, which for these CTEs took about as long as running them.
_TAKE_CTES = """
    taken AS (
        DELETE FROM queue.deliveries
        WHERE id IN (SELECT queue.ready_deliveries({consumer}, {limit}))
        RETURNING id, event_id, attempts, created_at, last_error
    ), claim AS (
        INSERT INTO queue.claims
            (consumer, lapses_at, deliveries, event_ids, attempts, created_ats, last_errors)
        SELECT {consumer}, now() + make_interval(secs => {lease}), array_agg(id),
               array_agg(event_id), array_agg(attempts), array_agg(created_at), array_agg(last_error)
        FROM taken
        HAVING count(*) > 0
        RETURNING id
    ), batch AS (
        SELECT '[' || string_agg(
            '{{"delivery_id":' || t.id || ',"attempts":' || (t.attempts + 1)
            || ',"envelope":{{"id":"' || e.id || '","type":' || to_json(e.type)
            || ',"version":' || e.version || ',"occurred_at":' || to_json(e.occurred_at)
            || ',"subject":"' || e.subject || '","data":' || e.payload::text || '}}}}',
            ',' ORDER BY t.id) || ']' AS claimed
        FROM taken t JOIN queue.events e ON e.id = t.event_id
    )
"""
_TAKEN = "(SELECT claimed FROM batch) AS claimed, (SELECT id FROM claim) AS claim"

# The claim on its own, in autocommit: committed before any handler starts. A claim lost in a
# server crash is harmless (the deliveries are still in their table then), so it need not wait
# for the WAL flush; the handling transaction that follows flushes it anyway.
_CLAIM = (
    "WITH" + _TAKE_CTES + f"SELECT {_TAKEN} "  # noqa: S608 (constants only)
    "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS no_flush_wait"
)

# First statement of a batch's transaction: settle its claim (delete it, which locks it: nothing
# can put the deliveries back while this transaction lives) and record its events in the
# consumer's inbox. An event recorded before (delivered again, by `redeliver`) breaks the inbox's
# key and fails the statement: the batch then goes one by one, where such an event is only acked.
# (A plain insert, because duplicates are rare: ON CONFLICT's speculative insertion cost every
# event of every batch.) `settled` is 0 when the claim is gone: it lapsed and was settled by
# another worker, which put the deliveries back; then nothing is recorded or handled here. A
# handler that hangs outside the database for longer than the lease has its transaction ended by
# PostgreSQL (idle_in_transaction_session_timeout), so the lease holds for it too.
_SETTLE_AND_RECORD = """
    WITH settled AS (
        DELETE FROM queue.claims WHERE id = CAST(:claim AS bigint) RETURNING event_ids
    ), hang_limit AS (
        SELECT set_config('idle_in_transaction_session_timeout', '{idle_ms}', true)
    ), recorded AS (
        INSERT INTO queue.inbox (event_id, consumer)
        SELECT u.event_id, {consumer} FROM settled, unnest(settled.event_ids) AS u(event_id), hang_limit
        ORDER BY u.event_id
    )"""
_SETTLED = "(SELECT count(*) FROM settled) AS settled"

# Claims that will not be settled by their handling (the worker died, or stopped mid-batch): their
# deliveries go back, ready at once, with the attempt counted; a delivery out of attempts goes
# back dead. `ended` is the claims being closed; the statement answers the deliveries made dead.
# (A delivery owed again meanwhile, by `redeliver`, keeps the newer row.)
_PUT_BACK = """
    back AS (
        INSERT INTO queue.deliveries
            (id, event_id, consumer, status, attempts, available_at, created_at, updated_at, last_error)
        SELECT u.id, u.event_id, ended.consumer,
               CASE WHEN u.attempts + 1 >= {max_attempts} THEN 'dead' ELSE 'pending' END,
               u.attempts + 1, now(), u.created_at, now(),
               CASE WHEN u.attempts + 1 >= {max_attempts}
                   THEN coalesce(u.last_error || '; then ', '')
                        || 'attempt ' || (u.attempts + 1) || ' never finished ({why})'
                   ELSE u.last_error END
        FROM ended, unnest(ended.deliveries, ended.event_ids, ended.attempts, ended.created_ats,
                           ended.last_errors) AS u(id, event_id, attempts, created_at, last_error)
        ON CONFLICT DO NOTHING
        RETURNING id, attempts, status
    )
    SELECT id, attempts FROM back WHERE status = 'dead'"""
# The consumer's lapsed claims (those being settled right now by their handling are passed over).
_LAPSED = """
    WITH ended AS (
        DELETE FROM queue.claims WHERE id IN (
            SELECT id FROM queue.claims WHERE consumer = {consumer} AND lapses_at <= now()
            FOR UPDATE SKIP LOCKED)
        RETURNING *
    ),"""
# This worker's own claim, given back at shutdown.
_RELEASED = """
    WITH ended AS (
        DELETE FROM queue.claims WHERE id = CAST(:claim AS bigint) RETURNING *
    ),"""


@dataclass(frozen=True, slots=True)
class _Statements:
    """One consumer's statements, its name and tuning written in as literals."""

    claim: Statement
    settle: Statement  # settle the batch's claim and record its events
    settle_and_claim: Statement  # ... and, while the queue is busy, claim the next batch with it
    lapsed: Statement  # put back the deliveries of lapsed claims
    released: Statement  # put back the deliveries of this worker's claim

    @classmethod
    def build(cls, consumer: str, tuning: QueueTuning) -> _Statements:
        values = {
            "consumer": "'" + consumer.replace("'", "''") + "'",  # a string literal
            "limit": int(tuning.batch_size),
            "max_attempts": int(tuning.max_attempts),
            "lease": float(tuning.lease_seconds),
            "idle_ms": tuning.hang_limit_ms,
        }
        take = _TAKE_CTES.format(**values)
        settle = _SETTLE_AND_RECORD.format(**values)
        built = cls(
            claim=Statement(_CLAIM.format(**values)),
            settle=Statement(f"{settle} SELECT {_SETTLED}, NULL AS claimed, NULL AS claim"),
            settle_and_claim=Statement(f"{settle},{take}SELECT {_SETTLED}, {_TAKEN}"),
            lapsed=Statement(_LAPSED.format(**values) + _PUT_BACK.format(**values, why="the lease expired")),
            released=Statement(
                _RELEASED.format(**values) + _PUT_BACK.format(**values, why="the worker stopped")
            ),
        )
        claim_only = ("claim",)
        expected = {
            "claim": (),
            "settle": claim_only,
            "settle_and_claim": claim_only,
            "lapsed": (),
            "released": claim_only,
        }
        if any(getattr(built, name).names != names for name, names in expected.items()):
            raise ValueError(f"consumer name {consumer!r} reads as a statement parameter")
        return built


_HANG_LIMIT = text("SELECT set_config('idle_in_transaction_session_timeout', :idle_ms, true)")

# The event-by-event pass after a handler failure begins by settling the claim (no rows: it
# lapsed and another worker put the deliveries back), which also gives each delivery's creation
# time.
_SETTLE_ONE_BY_ONE = text(
    "WITH settled AS (DELETE FROM queue.claims WHERE id = :claim RETURNING deliveries, created_ats) "
    "SELECT u.id, u.created_at FROM settled, unnest(settled.deliveries, settled.created_ats) "
    "AS u(id, created_at)"
)
# A handler failed on this attempt: its delivery goes back, dead when it was the last attempt,
# else ready again after the backoff.
_FAIL = text(
    "INSERT INTO queue.deliveries (id, event_id, consumer, status, attempts, available_at, created_at, "
    "updated_at, last_error) VALUES (:id, :event_id, :consumer, :status, :attempts, "
    "now() + make_interval(secs => :delay), :created_at, now(), :error) ON CONFLICT DO NOTHING"
)


_BEGIN = Statement("BEGIN")
_COMMIT = Statement("COMMIT")
_COMMIT_AND_BEGIN = Statement("COMMIT; BEGIN")  # one simple-protocol message, one round trip
_ROLLBACK = Statement("ROLLBACK")


class _Wire:
    """A worker's connection, whose transactions the worker sends itself.

    SQLAlchemy sees the connection in autocommit, so it sends no BEGIN or COMMIT of its own: a
    statement outside `begin()` ... `commit()` commits alone (the claim, the put-backs), and the
    handlers' sessions work inside the transaction the worker opened (their commit only flushes;
    their savepoints are real). Driving it here lets one batch's COMMIT and the next batch's BEGIN
    travel in one message: while the queue is busy a batch costs two round trips (settle and
    claim; commit and begin), not three."""

    def __init__(self, conn: AsyncConnection, driver: Driver) -> None:
        self.conn = conn
        self.driver = driver

    @classmethod
    async def of(cls, conn: AsyncConnection) -> _Wire:
        return cls(conn, await driver_of(conn))  # in autocommit: nothing is begun

    @property
    def open(self) -> bool:
        """Whether a transaction is open on the connection."""
        return bool(self.driver.raw.is_in_transaction())

    async def begin(self) -> None:
        if not self.open:  # else the last commit began it
            await self.driver.execute(_BEGIN, {})

    async def commit(self, *, begin_next: bool = False) -> None:
        await self.driver.execute(_COMMIT_AND_BEGIN if begin_next else _COMMIT, {})

    async def rollback(self) -> None:
        if self.open and not self.driver.raw.is_closed():
            await self.driver.execute(_ROLLBACK, {})

    async def close(self) -> None:
        """Roll back what is still open (a batch failed or cancelled midway), so that the pool
        never gets the connection back inside a transaction; a connection that cannot even roll
        back is discarded."""
        try:
            await self.rollback()
        except BaseException:
            if not self.conn.invalidated:
                await self.conn.invalidate()
            raise


class Claimed(msgspec.Struct, frozen=True):
    delivery_id: int
    attempts: int  # this one included
    envelope: Envelope


_CLAIMED = msgspec.json.Decoder(list[Claimed])


@dataclass(frozen=True, slots=True)
class Batch:
    """A claimed batch: its deliveries and its claim (the `queue.claims` row holding them)."""

    items: list[Claimed]
    claim: int | None

    @classmethod
    def of(cls, claimed: str | None, claim: int | None) -> Batch:
        return cls(_CLAIMED.decode(claimed) if claimed else [], claim)


_EMPTY = Batch([], None)


class QueueWorker:
    """One consumer's worker: claim a batch, handle it, settle the claim; sleep until NOTIFY or the
    poll interval. Run as many as you like, in as many processes: SKIP LOCKED, the claims and the
    inbox keep each event applied once per consumer.

    While there is work it keeps one pooled connection for consecutive batches, their
    transactions sent by the worker (`_Wire`), and gives it back when the queue runs dry. Every
    poll interval it also puts back the deliveries of the consumer's lapsed claims, whoever made
    them."""

    def __init__(
        self,
        engine: AsyncEngine,
        database_url: str,
        consumer: Consumer,
        tuning: QueueTuning,
    ) -> None:
        self.engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")  # see `_Wire`
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
        self._lapsed_due = 0.0  # time.monotonic() of the next look for lapsed claims

    # claims and handling --------------------------------------------------------------------

    async def drain_once(self) -> int:
        """Put back lapsed claims when due, then claim and handle one batch; return how many
        deliveries were claimed."""
        async with self._connected() as wire:
            await self._put_back_lapsed_when_due(wire)
            batch = await self._claim(wire)
            if batch.items:
                await self._handle(wire, batch, claim_next=False)
            return len(batch.items)

    async def drain(self, stop: asyncio.Event) -> None:
        """Handle batches until fewer than a full batch was ready (or `stop`). While batches come
        full, each one's transaction also claims the next."""
        batch = _EMPTY
        try:
            async with self._connected() as wire:
                await self._put_back_lapsed_when_due(wire)
                batch = await self._claim(wire)
                while batch.items:
                    busy = len(batch.items) >= self.tuning.batch_size and not stop.is_set()
                    following = await self._handle(wire, batch, claim_next=busy)
                    batch = following if following is not None else _EMPTY
                    if busy:
                        if following is None:  # the claim made with the batch was undone with it
                            batch = await self._claim(wire)
                        await self._put_back_lapsed_when_due(wire)
        except asyncio.CancelledError:
            # Cancelled at shutdown (past the grace period) mid-batch: its transaction is rolled
            # back; put the claimed deliveries back now rather than after the lease.
            if batch.claim is not None:
                await asyncio.shield(self._release(batch))
            raise

    @asynccontextmanager
    async def _connected(self) -> AsyncIterator[_Wire]:
        """A pooled connection in autocommit, its transactions driven by the worker (`_Wire`);
        whatever is left open when the block ends is rolled back before the pool gets it."""
        async with self._autocommit.connect() as conn:
            wire = await _Wire.of(conn)
            try:
                yield wire
            finally:
                await wire.close()

    async def _release(self, batch: Batch) -> None:
        """Give back this worker's claim on a batch it will not handle: the attempt counts, and
        its deliveries are ready again at once; log how many."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(text("SET LOCAL lock_timeout = '2s'"))
                dead = await (await driver_of(conn)).fetch(self._statements.released, {"claim": batch.claim})
            self._log_dead(dead, cause="shutdown")
            self.log.warning("queue_deliveries_released", count=len(batch.items), reason="shutdown")
        except Exception as exc:  # the claim still lapses
            self.log.warning("queue_release_failed", count=len(batch.items), error_type=type(exc).__name__)

    async def _put_back_lapsed_when_due(self, wire: _Wire) -> None:
        """Every poll interval: put back the deliveries of the consumer's lapsed claims (their
        workers died mid-batch), the attempt counted. One statement, committed on its own: not
        while a batch's transaction is open (then at the next call)."""
        if not self._lapsed_due_now() or wire.open:
            return
        self._lapsed_due = time.monotonic() + min(self.tuning.poll_seconds, self.tuning.lease_seconds)
        dead = await wire.driver.fetch(self._statements.lapsed, {})
        self._log_dead(dead, cause="lease")

    def _lapsed_due_now(self) -> bool:
        return time.monotonic() >= self._lapsed_due

    def _log_dead(self, dead: Sequence[Mapping[str, Any]], *, cause: str) -> None:
        """Count and log the deliveries a put-back found out of attempts."""
        for row in dead:
            self._dead.inc()
            self.log.error("event_dead", delivery_id=row["id"], attempts=row["attempts"], cause=cause)

    async def _claim(self, wire: _Wire) -> Batch:
        """Claim up to a batch of ready deliveries, committed (on its own) before this returns."""
        row = await wire.driver.fetchrow(self._statements.claim, {})
        assert row is not None  # the statement always answers one row
        return Batch.of(row["claimed"], row["claim"])

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

    async def _handle(self, wire: _Wire, batch: Batch, *, claim_next: bool) -> Batch | None:
        """Apply a claimed batch in one transaction; if that fails (a handler failed, or an event
        was delivered again), again event by event. Return what was claimed with it for the next
        round (None when nothing was). When something was, the commit begins the next batch's
        transaction too (unless the lapsed claims are due: they are put back between the two, on
        their own)."""
        failure: tuple[Claimed, Exception] | None = None
        try:
            await wire.begin()
            statement = self._statements.settle_and_claim if claim_next else self._statements.settle
            row = await wire.driver.fetchrow(statement, {"claim": batch.claim})
            assert row is not None  # the statement always answers one row
            if row["settled"]:  # else the claim lapsed, and another worker put it back
                # The handlers' session works in the worker's transaction: its commit only flushes.
                async with AsyncSession(bind=wire.conn, expire_on_commit=False) as session:
                    if self.consumer.batch_handler is not None:
                        await self._apply_batch(session, self.consumer.batch_handler, batch.items)
                    else:
                        for item in batch.items:
                            try:
                                await self._apply(session, item)
                            except Exception as exc:
                                failure = (item, exc)
                                raise
                    await session.commit()
            following = Batch.of(row["claimed"], row["claim"]) if claim_next else None
            await wire.commit(begin_next=bool(following and following.items) and not self._lapsed_due_now())
        except Exception:
            if wire.conn.invalidated:
                raise
            # Rolled back as a whole: again with a savepoint per event, the failed one excepted.
            await wire.rollback()
            await self._handle_one_by_one(wire, batch, failure)
            return None
        if row["settled"]:
            self._handled.inc(len(batch.items))
        return following

    async def _handle_one_by_one(
        self, wire: _Wire, batch: Batch, failure: tuple[Claimed, Exception] | None
    ) -> None:
        done = 0
        failed: list[tuple[Claimed, Exception]] = []
        await wire.begin()
        async with AsyncSession(bind=wire.conn, expire_on_commit=False) as session:
            await session.execute(_HANG_LIMIT, {"idle_ms": str(self.tuning.hang_limit_ms)})
            settled = await session.execute(_SETTLE_ONE_BY_ONE, {"claim": batch.claim})
            created: dict[int, datetime] = {row.id: row.created_at for row in settled}
            for item in batch.items if created else ():  # else another worker put them back
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
                    done += 1
                except Exception as exc:
                    failed.append((item, exc))
            for item, error in failed:
                await self._record_failure(session, item, error, created[item.delivery_id])
            await session.commit()  # flushes
        await wire.commit()
        self._handled.inc(done)
        for item, error in failed:
            self._count_failure(item, error)

    async def _record_failure(
        self, session: AsyncSession, item: Claimed, exc: Exception, created_at: datetime
    ) -> None:
        dead = item.attempts >= self.tuning.max_attempts
        await session.execute(
            _FAIL,
            {
                "id": item.delivery_id,
                "event_id": item.envelope.id,
                "consumer": self.consumer.name,
                "status": "dead" if dead else "pending",
                "attempts": item.attempts,
                "delay": 0 if dead else self.tuning.backoff(item.attempts),
                "created_at": created_at,
                "error": scrub_text(f"{type(exc).__name__}: {exc}")[:2000],
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
