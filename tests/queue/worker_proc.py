"""A QueueWorker in a process of its own, for the tests that kill one or run two.

    python tests/queue/worker_proc.py DATABASE_URL CONSUMER MODE [--lease S] [--poll S]
                                      [--max-attempts N] [--batch N] [--sleep-ms MS]

Modes (what the handler does with each event):
- record: writes a row to public.queue_test_effects in the handling transaction (after sleeping
  --sleep-ms, so that a second worker gets a share);
- block: marks "started" in public.queue_test_marks on a connection of its own, then waits
  forever (the test kills the process mid-handling);
- die: kills its own process with SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts.events import Envelope
from services.common.db.engine import create_engine
from services.common.logging import configure_logging
from services.common.queue import Consumer, QueueTuning, QueueWorker


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("consumer")
    parser.add_argument("mode", choices=["record", "block", "die"])
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--max-attempts", type=int, default=8)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--sleep-ms", type=float, default=0.0)
    args = parser.parse_args()
    configure_logging(json=True, level="WARNING")
    engine = create_engine(args.database_url, null_pool=True)

    async def handler(session: AsyncSession, envelope: Envelope) -> None:
        if args.mode == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        if args.mode == "block":
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO public.queue_test_marks (consumer, event_id, pid, what) "
                        "VALUES (:c, :e, :p, 'started')"
                    ),
                    {"c": args.consumer, "e": envelope.id, "p": os.getpid()},
                )
            await asyncio.Event().wait()
        await asyncio.sleep(args.sleep_ms / 1000)
        await session.execute(
            text("INSERT INTO public.queue_test_effects (consumer, event_id, pid) VALUES (:c, :e, :p)"),
            {"c": args.consumer, "e": envelope.id, "p": os.getpid()},
        )

    tuning = QueueTuning(
        batch_size=args.batch,
        lease_seconds=args.lease,
        poll_seconds=args.poll,
        max_attempts=args.max_attempts,
        backoff_base_seconds=0.05,
        backoff_max_seconds=0.2,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await QueueWorker(engine, args.database_url, Consumer(args.consumer, handler), tuning).run(stop)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
