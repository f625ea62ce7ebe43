"""The referral service's consumer of intake events: triage, then a referral."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import Clock
from services.common.contracts.events import Envelope, IntakeAmended, IntakeSubmitted
from services.common.contracts.vocabulary import ConsumerName
from services.common.queue import Consumer
from services.common.settings import Settings
from services.referral.referrals.triaging import triage_intake

NAME = ConsumerName.REFERRAL_TRIAGE


def triage_consumer(settings: Settings, clock: Clock) -> Consumer:
    async def handle(session: AsyncSession, envelope: Envelope) -> None:
        payload = envelope.payload()
        if not isinstance(payload, IntakeSubmitted):
            return
        await triage_intake(
            session, payload, now=clock.now(), settings=settings, amended=isinstance(payload, IntakeAmended)
        )

    return Consumer(NAME, handle)
