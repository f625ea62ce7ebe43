"""POST /v1/intakes against the real intake service and two bare baselines, in one run.

    uv run python -m bench intake [--quick]

- the service: `clinic serve intake` (one uvicorn process, no background workers) on a fresh,
  migrated database, with a front-desk key;
- B0-same: bare Litestar + asyncpg executing the statements one intake executes (bench/baselines.py);
- B0: bare Litestar + asyncpg inserting one JSONB row and one event row.

Each load level (connections) runs the three in turn, `rounds` times, so a change in the
machine's load hits all three alike; the figures are the medians of the rounds. The body is the
API's example form without an MRN (every request a new patient, no conflicts).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from dataclasses import dataclass

import asyncpg
import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from bench.baselines import B0_SCHEMA
from bench.common import PLOTS, Load, Proc, Series, clinic_service, median, post_load, svg_plot, uvicorn_app
from bench.queue import bench_database
from services.common.access.auth import create_api_key
from services.common.db.engine import create_engine, libpq_url
from tests.unit.test_intake_body import API_EXAMPLE


def intake_body() -> bytes:
    """The API's example form (the one the tests use), onset 60 days ago, no MRN."""
    form = copy.deepcopy(API_EXAMPLE)
    del form["patient"]["mrn"]
    onset = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=60)
    form["complaint"]["onset_date"] = onset.isoformat()  # type: ignore[index]
    return msgspec.json.encode(form)


async def front_desk_key(url: str, name: str = "bench") -> str:
    engine = create_engine(url, null_pool=True)
    async with AsyncSession(engine) as session:
        key, _ = await create_api_key(session, role="front_desk", name=name)
        await session.commit()
    await engine.dispose()
    return key


@dataclass
class IntakeResult:
    levels: list[int]
    runs: dict[str, dict[int, list[Load]]]
    rss_mb: float

    def best(self, name: str, level: int) -> Load:
        loads = self.runs[name][level]
        return sorted(loads, key=lambda x: x.rps)[len(loads) // 2]

    def rps(self, name: str, level: int) -> float:
        return median([x.rps for x in self.runs[name][level]])

    def max_rps(self, name: str = "intake") -> float:
        return max(self.rps(name, level) for level in self.levels)


NAMES = ("intake", "B0-same", "B0")


def run_intake(url: str, key: str, levels: list[int], seconds: float, rounds: int) -> IntakeResult:
    body = intake_body()
    env = {"BENCH_DSN": libpq_url(url)}
    runs: dict[str, dict[int, list[Load]]] = {n: {c: [] for c in levels} for n in NAMES}
    with (
        clinic_service("intake", url) as service,
        uvicorn_app("B0-same", "bench.baselines:b0_same", env) as same,
        uvicorn_app("B0", "bench.baselines:b0", env) as b0,
    ):
        procs: dict[str, tuple[Proc, str | None]] = {
            "intake": (service, key),
            "B0-same": (same, None),
            "B0": (b0, None),
        }
        for proc, k in procs.values():  # warm-up: connections, caches, JIT-free paths
            post_load(f"{proc.url}/v1/intakes", body, k, 4, 1, proc)
        for level in levels:
            for round_ in range(rounds):
                for name, (proc, k) in procs.items():
                    load = post_load(f"{proc.url}/v1/intakes", body, k, level, seconds, proc)
                    runs[name][level].append(load)
                    print(f"  {level:>3} conn  round {round_ + 1}  {name:<8} {load.line()}", flush=True)
        rss = service.rss()
    return IntakeResult(levels, runs, rss)


def report(result: IntakeResult) -> float:
    print("\nintake POST, medians of the rounds:")
    print(
        f"{'conn':>5} {'intake rps':>11} {'p50':>7} {'p99':>8} {'CPU/req':>8} {'B0-same':>9} {'B0':>8} "
        f"{'/B0-same':>9} {'/B0':>6}"
    )
    ratios = []
    for level in result.levels:
        s, same, b0 = (result.best(n, level) for n in NAMES)
        r_same = result.rps("intake", level) / max(result.rps("B0-same", level), 1e-9)
        r_b0 = result.rps("intake", level) / max(result.rps("B0", level), 1e-9)
        if level >= 8:
            ratios.append(r_same)
        print(
            f"{level:>5} {result.rps('intake', level):>11,.0f} {s.p50_ms:>6.1f}ms {s.p99_ms:>6.1f}ms "
            f"{s.server_cpu_ms_per_request:>6.2f}ms {result.rps('B0-same', level):>9,.0f} "
            f"{result.rps('B0', level):>8,.0f} {r_same:>9.2f} {r_b0:>6.2f}"
        )
        print(
            f"      CPU per request: intake {s.server_cpu_ms_per_request:.2f} ms, B0-same "
            f"{same.server_cpu_ms_per_request:.2f} ms, B0 {b0.server_cpu_ms_per_request:.2f} ms; "
            f"load generator ({s.generator}) {s.generator_cpu_s:.2f} s CPU for the intake run"
        )
    print(f"intake service RSS after the run: {result.rss_mb:.0f} MB")
    svg_plot(
        PLOTS / "intake-throughput.svg",
        "POST /v1/intakes: throughput",
        "connections",
        "requests/s",
        [Series(n, [(c, result.rps(n, c)) for c in result.levels]) for n in NAMES],
        log_x=True,
    )
    svg_plot(
        PLOTS / "intake-latency.svg",
        "POST /v1/intakes: p99 latency",
        "connections",
        "p99 ms",
        [Series(n, [(c, result.best(n, c).p99_ms) for c in result.levels]) for n in NAMES],
        log_x=True,
    )
    return (
        min(ratios)
        if ratios
        else result.rps("intake", result.levels[0]) / max(result.rps("B0-same", result.levels[0]), 1e-9)
    )


async def prepare(url: str) -> str:
    conn = await asyncpg.connect(libpq_url(url))
    await conn.execute(B0_SCHEMA)
    await conn.close()
    return await front_desk_key(url)


async def _database_then(quick: bool) -> None:
    async with bench_database() as url:
        key = await prepare(url)
        levels, seconds, rounds = ([1, 8], 2.0, 1) if quick else ([1, 8, 32], 8.0, 2)
        print(f"intake: {levels} connections, {seconds:.0f} s per run, {rounds} round(s)", flush=True)
        result = await asyncio.to_thread(run_intake, url, key, levels, seconds, rounds)
        ratio = report(result)
    print(f"intake ratio {ratio:.2f}")


def main(quick: bool) -> None:
    asyncio.run(_database_then(quick))
