from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.events import Envelope, ReferralFollowUpDue
from services.common.queue import Consumer, QueueTuning, QueueWorker, publish


def _payload() -> ReferralFollowUpDue:
    return ReferralFollowUpDue(
        referral_id=uuid.uuid4(),
        intake_id=uuid.uuid4(),
        follow_up_id=uuid.uuid4(),
        destination="regenerative_medicine",
        due_on=datetime.now(UTC).date(),
    )


async def test_committed_event_reaches_its_consumer_once(engine: AsyncEngine, database_url: str) -> None:
    seen: list[Envelope] = []

    async def handler(session: AsyncSession, envelope: Envelope) -> None:
        seen.append(envelope)

    payload = _payload()
    async with AsyncSession(engine) as session:
        await session.execute(
            text(
                "INSERT INTO queue.subscriptions VALUES ('smoke', 'referral.follow_up_due') "
                "ON CONFLICT DO NOTHING"
            )
        )
        await session.commit()
        event_id = await publish(session, payload, subject=payload.referral_id)
        await session.rollback()
        assert event_id is not None
        event_id = await publish(session, payload, subject=payload.referral_id)
        await session.commit()
    worker = QueueWorker(engine, database_url, Consumer("smoke", handler), QueueTuning(poll_seconds=0.1))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    for _ in range(50):
        if seen:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert [e.id for e in seen] == [event_id]
    assert seen[0].payload() == payload
