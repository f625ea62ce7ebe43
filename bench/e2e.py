"""Intake committed → referral committed → intake mirror updated, at idle and at half the maximum.

    uv run python -m bench e2e [--quick]

Both services run as `clinic serve <service> --with-workers` on one fresh database. First the
maximum intake rate is measured (wrk, 8 connections, a few seconds); then intakes are posted at a
steady rate (open loop: one every 1/rate seconds, whatever the answers) at idle (5/s) and at half
that maximum, and each intake's path is read back from the queue's own timestamps:

- t0: the `intake.submitted` event's `recorded_at` (the intake's transaction);
- t1: the `referral.created` event's `recorded_at` (the triage transaction that created the referral);
- t2: the intake service's inbox row for that event, `applied_at` (the mirror's transaction).

These are `now()` of their transactions, i.e. their start; each transaction lasts a few ms, so the
figures are within that of commit to commit.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

import asyncpg
import msgspec

from bench.common import PLOTS, Poster, Proc, Series, clinic_service, percentile, post_load, svg_plot
from bench.intake import front_desk_key, intake_body
from bench.queue import bench_database
from services.cli.run import freeze_startup_objects
from services.common.db.engine import libpq_url

_PATHS = """
SELECT extract(epoch FROM r.recorded_at - s.recorded_at) * 1000 AS referral_ms,
       extract(epoch FROM i.applied_at - s.recorded_at) * 1000 AS mirror_ms
FROM queue.events s
JOIN queue.events r ON r.type = 'referral.created' AND r.payload->>'intake_id' = s.subject::text
LEFT JOIN queue.inbox i ON i.event_id = r.id AND i.consumer = 'intake.referral_mirror'
WHERE s.type = 'intake.submitted' AND s.subject = ANY($1::uuid[])
"""


@dataclass
class Phase:
    label: str
    rate: float
    sent: int
    referral_ms: list[float]
    mirror_ms: list[float]
    #: Each POST's own answer time, as the generator saw it (its own CPU included).
    post_ms: list[float]

    def pct(self, values: list[float], p: float) -> float:
        return percentile(values, p)

    def line(self) -> str:
        r, m = self.referral_ms, self.mirror_ms
        return (
            f"{self.label:<14} {self.rate:6.0f}/s sent {self.sent:5}  "
            f"intake→referral p50 {self.pct(r, 50):6.1f} "
            f"p95 {self.pct(r, 95):6.1f} p99 {self.pct(r, 99):6.1f} ms   →mirror p50 {self.pct(m, 50):6.1f} "
            f"p95 {self.pct(m, 95):6.1f} p99 {self.pct(m, 99):6.1f} ms   "
            f"POST p50 {self.pct(self.post_ms, 50):6.1f} p99 {self.pct(self.post_ms, 99):6.1f} ms"
        )


async def open_loop(url: str, key: str, rate: float, seconds: float) -> tuple[list[str], list[float], float]:
    """POST at `rate`/s for `seconds`; return the created intake ids, each POST's answer time (ms)
    and the generator's CPU."""
    poster = Poster(f"{url}/v1/intakes", intake_body(), key)
    # The generator's own full garbage collections (120 ms in this process) would hold back its
    # schedule and add to the answer times it reads: what it has made so far is frozen first.
    freeze_startup_objects()
    ids: list[str] = []
    answered_ms: list[float] = []
    cpu0 = time.process_time()

    async def one() -> None:
        sent = time.perf_counter()
        status, answer = await poster.post()
        answered_ms.append((time.perf_counter() - sent) * 1000)
        if status == 201:
            ids.append(msgspec.json.decode(answer)["id"])

    tasks = []
    started = time.perf_counter()
    n = 0
    while (due := started + n / rate) < started + seconds:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one()))
        n += 1
    await asyncio.gather(*tasks, return_exceptions=True)
    poster.close()
    return ids, answered_ms, time.process_time() - cpu0


async def collect(dsn: str, ids: list[str], wait_s: float = 60.0) -> tuple[list[float], list[float]]:
    """Wait until every intake is mirrored (or `wait_s`), then read the paths."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            rows = await conn.fetch(_PATHS, ids)
            mirrored = [r for r in rows if r["mirror_ms"] is not None]
            if len(mirrored) >= len(ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    return [float(r["referral_ms"]) for r in rows], [float(r["mirror_ms"]) for r in mirrored]


async def phase(label: str, intake: Proc, key: str, dsn: str, rate: float, seconds: float) -> Phase:
    ids, post_ms, cpu = await open_loop(intake.url, key, rate, seconds)
    referral, mirror = await collect(dsn, ids)
    result = Phase(label, rate, len(ids), referral, mirror, post_ms)
    print(result.line(), f" generator CPU {cpu:.2f} s", flush=True)
    if len(mirror) < len(ids):
        print(f"   only {len(mirror)} of {len(ids)} intakes were mirrored within the wait", flush=True)
    return result


async def run(quick: bool) -> Phase:
    async with bench_database() as url:
        key = await front_desk_key(url)
        dsn = libpq_url(url)
        with (
            clinic_service("referral", url, workers=True) as referral,
            clinic_service("intake", url, workers=True) as intake,
        ):
            await asyncio.to_thread(post_load, f"{intake.url}/v1/intakes", intake_body(), key, 4, 1, intake)
            probe = await asyncio.to_thread(
                post_load, f"{intake.url}/v1/intakes", intake_body(), key, 8, 2 if quick else 5, intake
            )
            maximum = probe.rps
            print(f"maximum intake rate (8 connections, workers running): {maximum:,.0f}/s", flush=True)
            await asyncio.sleep(3)  # let the backlog drain before timing anything
            seconds = 3.0 if quick else 10.0
            idle = await phase("idle", intake, key, dsn, 5.0, seconds)
            fixed = os.environ.get("CLINIC_BENCH_E2E_RATE")  # the same rate for two runs to compare
            loaded = float(fixed) if fixed else max(5.0, maximum / 2)
            half = await phase("fixed rate" if fixed else "half maximum", intake, key, dsn, loaded, seconds)
            print(
                f"RSS after the run: intake {intake.rss():.0f} MB, referral {referral.rss():.0f} MB; "
                f"CPU so far: intake {intake.cpu():.1f} s, referral {referral.cpu():.1f} s",
                flush=True,
            )
    phases = [idle, half]
    svg_plot(
        PLOTS / "e2e-latency.svg",
        "intake committed → referral committed",
        "intakes/s",
        "ms",
        [Series(f"p{p}", [(ph.rate, percentile(ph.referral_ms, p)) for ph in phases]) for p in (50, 95, 99)]
        + [Series("mirror p99", [(ph.rate, percentile(ph.mirror_ms, 99)) for ph in phases])]
        + [Series("POST p99", [(ph.rate, percentile(ph.post_ms, 99)) for ph in phases])],
    )
    return half


def main(quick: bool) -> None:
    half = asyncio.run(run(quick))
    print(f"e2e p50_ms {percentile(half.referral_ms, 50):.1f} p99_ms {percentile(half.referral_ms, 99):.1f}")
