"""The webhook sender against a bare httpx loop (W0), its wake-up delay, and head-of-line blocking.

    uv run python -m bench webhooks [--quick]

A local receiver (bench/sink.py, its own process) answers 204 on `/ok` and never answers on
`/hang`. On a fresh database:

1. W0: one httpx client posting N signed-size bodies to `/ok`, one after another.
   W0 and the sender alternate, three times (`--quick`: once); the ratio is the median of the
   three rounds' sender/W0.
2. The sender (`WebhookSender`, in this process, the service's settings but a 5 s timeout),
   running and idle, drains N deliveries of one endpoint to `/ok`, committed at once with the
   NOTIFY that wakes it; deliveries/s from that commit to the last success.
3. Idle delay: with the sender idle, referral events are handed to the webhook consumer's handler
   one by one (as the queue worker would, committed) and each delivery's
   `succeeded_at - created_at` (the database's clock) is the delay a subscriber sees.
4. Hanging endpoint: the same, with a second endpoint on `/hang` subscribed to the same events;
   the delay the healthy endpoint sees meanwhile.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bench.common import PLOTS, Series, free_port, percentile, process, svg_plot
from bench.queue import bench_database
from services.common.access.secret_box import SecretBox, new_key
from services.common.access.signing import new_secret, signature_header
from services.common.contracts.events import Envelope, ReferralCreated
from services.common.db.engine import create_engine
from services.referral.webhooks.consumer import enqueue_deliveries
from services.referral.webhooks.sender import SENDER_CHANNEL, WebhookSender
from services.referral.webhooks.ssrf import TargetGuard
from services.referral.webhooks.tuning import SenderTuning

BODY = (
    b'{"type":"referral.created","timestamp":"2026-11-30T04:00:00Z","data":{"referral_id":'
    b'"6f1c1a52-8a43-4f4e-9d8a-0d5b1c1e2f30","intake_id":"0b7e5a36-3f0e-4a7c-9a51-1a2b3c4d5e6f",'
    b'"intake_version":1,"destination":"pain_management","priority":"routine","status":"pending",'
    b'"due_by":"2026-12-14T04:00:00Z","created_at":"2026-11-30T04:00:00Z","supersedes":null}}'
)


async def w0(url: str, n: int) -> tuple[float, float]:
    """Deliveries/s of a bare sequential httpx loop, and its CPU seconds."""
    secret = new_secret()
    cpu0 = time.process_time()
    async with httpx.AsyncClient(timeout=5.0) as client:
        started = time.perf_counter()
        for _ in range(n):
            msg_id = str(uuid.uuid4())
            ts = int(time.time())
            headers = {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(ts),
                "webhook-signature": signature_header([secret], msg_id, ts, BODY),
            }
            response = await client.post(url, content=BODY, headers=headers)
            response.raise_for_status()
        elapsed = time.perf_counter() - started
    return n / elapsed, time.process_time() - cpu0


#: The bench's own sealing key: endpoints' secrets are stored sealed, as the service stores them,
#: and the sender opens them as it does in the service.
BOX = SecretBox([new_key()])
#: How long the sender may take to send a run's deliveries before the bench gives up.
DRAIN_SECONDS = 300


async def add_endpoint(engine: AsyncEngine, url: str) -> uuid.UUID:
    endpoint_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO referral.webhook_endpoints (id, url, event_types, secret, created_by) "
                "VALUES (:id, :url, ARRAY['referral.created'], :secret, 'bench')"
            ),
            {"id": endpoint_id, "url": url, "secret": BOX.seal(new_secret())},
        )
    return endpoint_id


async def drop_endpoints(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM referral.webhook_endpoints"))


def sender_for(engine: AsyncEngine) -> WebhookSender:
    tuning = SenderTuning(timeout_seconds=5.0, poll_seconds=2.0)
    return WebhookSender(engine, tuning, TargetGuard.from_allow_list(["127.0.0.1"]), box=BOX)


async def sender_rate(engine: AsyncEngine, url: str, n: int) -> tuple[float, float]:
    """Deliveries/s of the sender, running and idle (listening) when `n` deliveries of one endpoint
    are committed with the NOTIFY that wakes it (as the webhook consumer commits them), from that
    commit to the last success; and this process's CPU meanwhile. W0's client, likewise, is made
    before its clock starts."""
    endpoint = await add_endpoint(engine, url)
    stop = asyncio.Event()
    sender = sender_for(engine)
    task = asyncio.create_task(sender.run(stop))
    for _ in range(1000):  # 10 s at most
        if sender.listening:
            break
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError("the sender is not listening after 10 s")
    async with engine.connect() as conn:
        await conn.begin()
        await conn.execute(
            text(
                "INSERT INTO referral.webhook_deliveries (id, endpoint_id, event_id, event_type, payload) "
                "SELECT gen_random_uuid(), :e, gen_random_uuid(), 'referral.created', CAST(:p AS jsonb) "
                "FROM generate_series(1, :n)"
            ),
            {"e": endpoint, "p": BODY.decode(), "n": n},
        )
        await conn.execute(text("SELECT pg_notify(:c, '')"), {"c": SENDER_CHANNEL})
        cpu0 = time.process_time()
        started = time.perf_counter()
        await conn.commit()
    async with engine.connect() as conn:
        deadline = time.monotonic() + DRAIN_SECONDS
        while True:
            left = await conn.scalar(
                text("SELECT count(*) FROM referral.webhook_deliveries WHERE status <> 'succeeded'")
            )
            await conn.commit()
            if not left:
                break
            if time.monotonic() > deadline:  # a broken sender fails the bench, never hangs it
                raise RuntimeError(f"{left} of {n} deliveries not sent after {DRAIN_SECONDS} s")
            await asyncio.sleep(0.05)
        last = await conn.scalar(
            text(
                "SELECT extract(epoch FROM max(succeeded_at) - min(created_at)) "
                "FROM referral.webhook_deliveries"
            )
        )
    elapsed = min(time.perf_counter() - started, float(last or 1e9))
    cpu = time.process_time() - cpu0
    stop.set()
    await task
    await drop_endpoints(engine)
    return n / elapsed, cpu


def envelope() -> Envelope:
    now = datetime.now(UTC)
    payload = ReferralCreated(
        referral_id=uuid.uuid4(),
        intake_id=uuid.uuid4(),
        intake_version=1,
        destination="pain_management",
        priority="routine",
        status="pending",
        due_by=now + timedelta(days=14),
        created_at=now,
        reason_codes=[],
    )
    import msgspec

    return Envelope(
        id=uuid.uuid4(),
        type=ReferralCreated.TYPE,
        version=1,
        occurred_at=now,
        subject=payload.referral_id,
        data=msgspec.to_builtins(payload),
    )


async def delays(engine: AsyncEngine, healthy: uuid.UUID, events: int, gap: float) -> list[float]:
    """Hand `events` events to the webhook consumer, `gap` s apart, with the sender running;
    return the healthy endpoint's delivery delays in ms."""
    stop = asyncio.Event()
    task = asyncio.create_task(sender_for(engine).run(stop))
    await asyncio.sleep(0.5)  # the sender is idle now, waiting for work
    for _ in range(events):
        async with AsyncSession(engine) as session:
            await enqueue_deliveries(session, envelope())
            await session.commit()
        await asyncio.sleep(gap)
    async with engine.connect() as conn:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = await conn.scalar(
                text(
                    "SELECT count(*) FROM referral.webhook_deliveries "
                    "WHERE endpoint_id = :e AND status <> 'succeeded'"
                ),
                {"e": healthy},
            )
            await conn.commit()
            if not left:
                break
            await asyncio.sleep(0.1)
        rows = (
            (
                await conn.execute(
                    text(
                        "SELECT extract(epoch FROM coalesce(succeeded_at, now()) - created_at) * 1000 "
                        "FROM referral.webhook_deliveries WHERE endpoint_id = :e"
                    ),
                    {"e": healthy},
                )
            )
            .scalars()
            .all()
        )
    stop.set()
    await task
    return [float(x) for x in rows]


async def run(quick: bool) -> float:
    n = 300 if quick else 2000
    events = 5 if quick else 20
    port = free_port()
    argv = [sys.executable, "-m", "bench.sink", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    async with bench_database() as url:
        engine = create_engine(url)
        with process("sink", argv, {}, f"{base}/health", base) as sink:
            rounds = 1 if quick else 3
            w0_rates, sender_rates = [], []
            for _ in range(rounds):
                rate, cpu = await w0(f"{base}/ok", n)
                w0_rates.append(rate)
                print(f"W0 (bare httpx loop): {rate:8,.0f} deliveries/s  (CPU {cpu:.2f} s)", flush=True)
                sink_cpu = sink.cpu()
                rate, cpu = await sender_rate(engine, f"{base}/ok", n)
                sender_rates.append(rate)
                print(
                    f"sender:               {rate:8,.0f} deliveries/s  (CPU {cpu:.2f} s in this process; "
                    f"the sink {sink.cpu() - sink_cpu:.2f} s)",
                    flush=True,
                )
            healthy = await add_endpoint(engine, f"{base}/ok")
            idle = await delays(engine, healthy, events, 0.3)
            print(
                f"idle: a delivery leaves after p50 {percentile(idle, 50):.0f} ms, max {max(idle):.0f} ms "
                f"(the sender's poll is 2 s)",
                flush=True,
            )
            await add_endpoint(engine, f"{base}/hang")
            hung = await delays(engine, healthy, events, 0.2)
            print(
                f"with another endpoint hanging: the healthy one waits p50 {percentile(hung, 50):.0f} ms, "
                f"max {max(hung):.0f} ms",
                flush=True,
            )
        await engine.dispose()
    ratio = sorted(s / w for s, w in zip(sender_rates, w0_rates, strict=True))[len(w0_rates) // 2]
    svg_plot(
        PLOTS / "webhooks.svg",
        "webhooks: deliveries/s and delay",
        "run",
        "deliveries/s",
        [
            Series("W0 bare loop", [(i + 1, r) for i, r in enumerate(w0_rates)]),
            Series("sender", [(i + 1, r) for i, r in enumerate(sender_rates)]),
            Series("idle delay p50 ms", [(1, percentile(idle, 50))]),
            Series("hang delay max ms", [(1, max(hung))]),
        ],
    )
    return ratio


def main(quick: bool) -> None:
    ratio = asyncio.run(run(quick))
    print(f"webhooks ratio {ratio:.2f}")
