"""The referral service's consumer of intake events: triage, then a referral."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import Clock
from services.common.contracts.events import Envelope, IntakeAmended, IntakeSubmitted
from services.common.contracts.vocabulary import ConsumerName
from services.common.queue import Consumer
from services.common.settings import Settings
from services.referral.referrals.batch_triage import triage_new_intakes
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

    async def handle_batch(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        """First submissions of intakes seen once in the batch: together; the rest one by one,
        in order (they touch no intake of the first kind)."""
        payloads = [p for e in envelopes if isinstance(p := e.payload(), IntakeSubmitted)]
        seen = Counter(p.intake_id for p in payloads)
        together = [p for p in payloads if not isinstance(p, IntakeAmended) and seen[p.intake_id] == 1]
        now = clock.now()
        if together:
            await triage_new_intakes(session, together, now=now, settings=settings)
        for payload in payloads:
            if isinstance(payload, IntakeAmended) or seen[payload.intake_id] > 1:
                await triage_intake(
                    session, payload, now=now, settings=settings, amended=isinstance(payload, IntakeAmended)
                )

    return Consumer(NAME, handle, handle_batch)
