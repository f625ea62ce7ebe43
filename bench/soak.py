"""Soak: `clinic up` (embedded PostgreSQL, a fresh data dir) under steady intake load for N
minutes; what drifts between the start and the end.

    uv run python -m bench.soak [--minutes 15] [--rate 10] [--every 60]

Reported at the start (after a warm-up minute's worth of load, or 30 s, whichever is less), every
`--every` seconds and at the end:
- RSS per process: `clinic up`, each service process, and PostgreSQL (all its processes summed);
- queue claim time: the claim's row pick (`FOR UPDATE SKIP LOCKED LIMIT 50`, rolled back), per
  consumer, median of 5;
- table sizes (with indexes and TOAST) of every table in the clinic's schemas, and dead tuples;
- dead letters: queue deliveries and webhook deliveries marked dead;
- the load: answers by status and the acknowledged intakes still not routed.

At the end every acknowledged intake is checked as the reliability suite checks it (one live
referral, mirrored, nothing owed). Not part of the test suite; it is the long version of it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import psutil

from tests.reliability.harness import Load, System, settle_and_check, sql

CONSUMERS = ("referral.triage", "referral.webhooks", "intake.referral_mirror")
_PICK = (
    "SELECT id FROM queue.deliveries WHERE consumer = $1 AND status = 'pending' AND available_at <= now() "
    "ORDER BY id LIMIT 50 FOR UPDATE SKIP LOCKED"
)
_SIZES = """
SELECT n.nspname || '.' || c.relname AS name, pg_total_relation_size(c.oid) AS bytes,
       coalesce(s.n_dead_tup, 0) AS dead_tuples, coalesce(s.n_live_tup, 0) AS live_tuples
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.relkind = 'r' AND n.nspname IN ('queue', 'intake', 'referral', 'access')
ORDER BY 2 DESC
"""


def claim_ms(dsn: str) -> dict[str, float]:
    import asyncio

    import asyncpg

    async def run() -> dict[str, float]:
        conn = await asyncpg.connect(dsn)
        try:
            out = {}
            for consumer in CONSUMERS:
                times = []
                for _ in range(5):
                    started = time.perf_counter()
                    tx = conn.transaction()
                    await tx.start()
                    await conn.fetch(_PICK, consumer)
                    await tx.rollback()  # the rows picked stay with the workers
                    times.append((time.perf_counter() - started) * 1000)
                out[consumer] = round(statistics.median(times), 2)
            return out
        finally:
            await conn.close()

    return asyncio.run(run())


def rss_mb(system: System) -> dict[str, float]:
    assert system.proc is not None
    out: dict[str, float] = {}
    root = psutil.Process(system.proc.pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            cmd = proc.cmdline()
            name = "clinic up" if proc.pid == root.pid else " ".join(cmd[3:5]) or proc.name()
            out[name] = round(proc.memory_info().rss / 2**20, 1)
        except psutil.NoSuchProcess:
            continue
    pg = 0.0
    postmasters = system.postgres()  # the postmaster names the data dir; its backends do not
    for proc in {p.pid: p for pm in postmasters for p in [pm, *pm.children(recursive=True)]}.values():
        try:
            pg += proc.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
    out["postgres (all)"] = round(pg, 1)
    return out


def snapshot(system: System, load: Load, started: float) -> dict[str, Any]:
    dsn = system.dsn()
    sizes = sql(dsn, _SIZES)
    dead = sql(
        dsn,
        "SELECT (SELECT count(*) FROM queue.deliveries WHERE status = 'dead') AS queue, "
        "(SELECT count(*) FROM referral.webhook_deliveries WHERE status = 'dead') AS webhooks",
    )[0]
    return {
        "minute": round((time.monotonic() - started) / 60, 1),
        "rss_mb": rss_mb(system),
        "claim_ms": claim_ms(dsn),
        "tables_kb": {r["name"]: round(r["bytes"] / 1024) for r in sizes},
        "dead_tuples": {r["name"]: r["dead_tuples"] for r in sizes if r["dead_tuples"]},
        "dead_letters": {"queue": dead["queue"], "webhooks": dead["webhooks"]},
        "answers": load.by_status(),
        "pending_deliveries": sql(dsn, "SELECT count(*) FROM queue.deliveries WHERE status = 'pending'")[0][
            0
        ],
    }


def drift(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    def diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {k: round(b.get(k, 0) - a.get(k, 0), 2) for k in sorted(set(a) | set(b))}

    return {
        "rss_mb": diff(first["rss_mb"], last["rss_mb"]),
        "claim_ms": diff(first["claim_ms"], last["claim_ms"]),
        "tables_kb": {k: v for k, v in diff(first["tables_kb"], last["tables_kb"]).items() if v},
        "dead_letters": diff(first["dead_letters"], last["dead_letters"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=10.0, help="intakes per second (about)")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between snapshots")
    args = parser.parse_args(argv)

    system = System.create(CLINIC_QUEUE_LEASE_SECONDS="60", CLINIC_QUEUE_POLL_SECONDS="2")
    try:
        system.start()
        threads = 2
        with Load(system, threads=threads, pause=threads / args.rate, limit=10**9) as load:
            started = time.monotonic()
            time.sleep(min(30.0, args.minutes * 60 / 4))
            first = snapshot(system, load, started)
            print(json.dumps({"start": first}), flush=True)
            end = started + args.minutes * 60
            while time.monotonic() < end:
                time.sleep(max(0.0, min(args.every, end - time.monotonic())))
                print(json.dumps({"at": snapshot(system, load, started)}), flush=True)
            last = snapshot(system, load, started)
        result = settle_and_check(system.dsn(), load.acknowledged(), within=120)
        summary = {
            "minutes": args.minutes,
            "target_rate_per_s": args.rate,
            "answers": load.by_status(),
            "check": str(result),
            "start": first,
            "end": last,
            "drift": drift(first, last),
        }
        print(json.dumps({"summary": summary}, indent=2), flush=True)
        code = system.stop()
        left = system.left_behind()
        if left:
            print(f"left behind: {left}", file=sys.stderr)
        return 0 if result.clean and code == 0 and not left else 1
    finally:
        system.close()


if __name__ == "__main__":
    sys.exit(main())
