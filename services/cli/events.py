"""`clinic events dead [--consumer NAME]` and `clinic events replay ID`: the dead-letter desk.

A delivery is dead when its consumer failed it `CLINIC_QUEUE_MAX_ATTEMPTS` times (or its worker
died that often while handling it). Once the cause is fixed, replay re-queues it with a fresh set
of attempts; the consumer's inbox keeps an event it had already applied from applying twice.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.queue import DeadDelivery, dead_deliveries, replay_dead


def register(sub: Any) -> None:
    events = sub.add_parser("events", help="the event queue's dead deliveries: list and replay")
    commands = events.add_subparsers(dest="events_command", required=True)

    dead = commands.add_parser("dead", help="list dead deliveries, newest first")
    dead.add_argument("--consumer", help="only this consumer's (e.g. referral.triage)")
    dead.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    dead.set_defaults(fn=cmd_events_dead)

    replay = commands.add_parser("replay", help="re-queue a dead delivery with fresh attempts")
    replay.add_argument("id", type=int, help="the delivery id `clinic events dead` shows")
    replay.set_defaults(fn=cmd_events_replay)


def format_dead(rows: list[DeadDelivery]) -> list[str]:
    """One tab-separated line per delivery, under a header."""
    lines = ["id\tconsumer\tevent_type\tevent_id\tattempts\tdead_since\tlast_error"]
    for row in rows:
        error = (row.last_error or "").replace("\n", " ").replace("\t", " ")
        lines.append(
            f"{row.id}\t{row.consumer}\t{row.event_type}\t{row.event_id}\t{row.attempts}\t"
            f"{row.updated_at.isoformat(timespec='seconds')}\t{error}"
        )
    return lines


def cmd_events_dead(args: argparse.Namespace) -> int:
    from services.cli.common import run_async, with_engine

    async def body(engine: AsyncEngine) -> list[DeadDelivery]:
        async with engine.connect() as conn:
            consumers = [args.consumer] if args.consumer else None
            return await dead_deliveries(conn, consumers, limit=max(1, args.limit))

    rows: list[DeadDelivery] = run_async(lambda s: with_engine(s, body))
    if not rows:
        print("no dead deliveries", file=sys.stderr)
        return 0
    print("\n".join(format_dead(rows)))
    return 0


def cmd_events_replay(args: argparse.Namespace) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession

    from services.cli.common import run_async, with_engine
    from services.common.access.audit import acting_as

    async def body(engine: AsyncEngine) -> bool:
        # Audited as the API's replay is (same action), by the operating-system user (`cli:NAME`,
        # role admin): the row commits with the replay.
        with acting_as("cli", "replayDeadDelivery", resource=("events", str(args.id))):
            async with AsyncSession(engine) as session:
                done = await replay_dead(await session.connection(), args.id)
                if done:
                    await session.commit()
                return done

    if not run_async(lambda s: with_engine(s, body)):
        print(f"clinic events replay: no dead delivery with id {args.id}", file=sys.stderr)
        return 1
    print(f"delivery {args.id} re-queued", file=sys.stderr)
    return 0
