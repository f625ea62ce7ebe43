"""The follow-up scheduler: a background loop that turns follow-ups whose day has come into
`referral.follow_up_due` events.

Everything it knows is in PostgreSQL, so it survives restarts (a follow-up that came due while no
scheduler ran is emitted by the next one) and runs in any number of replicas: each batch is one
short transaction that claims rows with SKIP LOCKED, marks them `due` and publishes their events.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import KW_ONLY, dataclass

from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.clock import Clock, clinic_today, until_stopped
from services.common.http.web import background_loop, sessionmaker_from
from services.common.settings import Settings
from services.referral.followups.services import emit_due

BATCH_SIZE = 100


@dataclass
class FollowUpScheduler:
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: Clock
    _: KW_ONLY
    poll_seconds: float
    batch_size: int = BATCH_SIZE
    time_zone: str = "UTC"

    async def run_once(self) -> int:
        """Emit every follow-up due by the clinic's date, a batch per transaction; return how many
        this scheduler emitted."""
        total = 0
        while True:
            now = self.clock.now()
            async with self.sessionmaker() as session:
                emitted = await emit_due(
                    session, today=clinic_today(now, self.time_zone), now=now, limit=self.batch_size
                )
                await session.commit()
            total += emitted
            if emitted < self.batch_size:
                return total

    async def run(self, stop: asyncio.Event) -> None:
        await until_stopped(stop, self.run_once, self.poll_seconds, failed="follow_up_scheduler_failed")


def follow_up_worker(state: State) -> AbstractAsyncContextManager[None]:
    """The service's worker: the scheduler on the app's clock, every `follow_up_poll_seconds`."""
    settings: Settings = state["clinic_settings"]
    clock: Clock = state["clinic_clock"]
    scheduler = FollowUpScheduler(
        sessionmaker_from(state),
        clock,
        poll_seconds=settings.follow_up_poll_seconds,
        time_zone=settings.clinic_time_zone,
    )
    return background_loop(state, "follow-ups:scheduler", scheduler.run)
