"""Minimum necessary in the queue: once every consumer has handled an intake event, the queue's
upkeep drops the form (the patient's name, birth date, contacts, notes) from the stored event;
an event with a dead delivery keeps it, so a replay from the dead letters still triages it."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.clock import SystemClock
from services.common.contracts.events import Envelope, IntakeSubmitted
from services.common.contracts.vocabulary import ConsumerName
from services.common.queue import Consumer, QueueWorker, publish, redact_handled, replay_dead
from services.common.settings import Settings
from services.referral.triage_consumer import triage_consumer
from services.referral.webhooks.consumer import consumer as webhooks_consumer
from tests.queue.support import FAST
from tests.webhooks.support import PATIENT_STRINGS, intake_submitted


async def _publish(engine: AsyncEngine) -> tuple[IntakeSubmitted, uuid.UUID]:
    event = intake_submitted()
    async with AsyncSession(engine) as session:
        event_id = await publish(session, event, subject=event.intake_id)
        await session.commit()
    assert event_id is not None
    return event, event_id


async def _owed(engine: AsyncEngine, event_id: uuid.UUID) -> dict[str, Any]:
    """The deliveries still owed for the event: consumer -> (delivery id, status)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT consumer, id, status FROM queue.deliveries WHERE event_id = :e"), {"e": event_id}
        )
        return {r.consumer: (r.id, r.status) for r in rows}


async def _handle_all(engine: AsyncEngine, database_url: str, consumers: list[Consumer]) -> None:
    """Run the real consumers until none has anything ready."""
    for consumer in consumers:
        worker = QueueWorker(engine, database_url, consumer, FAST)
        while await worker.drain_once():
            pass


async def _stored(engine: AsyncEngine, event_id: uuid.UUID) -> tuple[dict[str, Any], str]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT payload, payload::text AS raw FROM queue.events WHERE id = :e"), {"e": event_id}
            )
        ).one()
    return dict(row.payload), row.raw


async def _referral_patients(engine: AsyncEngine, intake_id: uuid.UUID) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT patient FROM referral.referrals WHERE intake_id = :i"), {"i": intake_id}
        )
        return [dict(r.patient) for r in rows]


async def test_a_handled_intake_event_loses_the_form_and_a_dead_one_keeps_it_for_replay(
    engine: AsyncEngine, database_url: str, settings: Settings
) -> None:
    consumers = [triage_consumer(settings, SystemClock()), webhooks_consumer]
    handled, handled_id = await _publish(engine)
    assert ConsumerName.REFERRAL_TRIAGE in await _owed(engine, handled_id)
    await _handle_all(engine, database_url, consumers)
    assert await _owed(engine, handled_id) == {}
    assert [p["family_name"] for p in await _referral_patients(engine, handled.intake_id)] == [
        PATIENT_STRINGS[1]
    ]

    # The second one's triage failed every attempt: its delivery is dead.
    stuck, stuck_id = await _publish(engine)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE queue.deliveries SET status = 'dead' WHERE event_id = :e AND consumer = :c"),
            {"e": stuck_id, "c": ConsumerName.REFERRAL_TRIAGE},
        )
    await _handle_all(engine, database_url, consumers[1:])  # the webhooks, if any wanted it
    [(dead_id, status)] = (await _owed(engine, stuck_id)).values()
    assert status == "dead"

    assert (await redact_handled(engine) or 0) >= 1

    payload, raw = await _stored(engine, handled_id)
    for patient_string in PATIENT_STRINGS:
        assert patient_string not in raw
    assert "intake" not in payload
    assert payload["intake_id"] == str(handled.intake_id)
    assert payload["patient_id"] == str(handled.patient_id)
    assert payload["intake_version"] == 1
    assert {"submitted_at", "redacted_at"} <= set(payload)

    kept, kept_raw = await _stored(engine, stuck_id)
    assert kept["intake"]["patient"]["family_name"] == PATIENT_STRINGS[1]
    assert "redacted_at" not in kept and PATIENT_STRINGS[-1] in kept_raw

    # The operator replays it: triage still has the whole form, and the referral is made.
    async with engine.begin() as conn:
        assert await replay_dead(conn, dead_id)
    await _handle_all(engine, database_url, consumers[:1])
    assert [p["family_name"] for p in await _referral_patients(engine, stuck.intake_id)] == [
        PATIENT_STRINGS[1]
    ]
    # Handled now, so the next pass drops its form too.
    assert (await redact_handled(engine) or 0) >= 1
    payload, raw = await _stored(engine, stuck_id)
    assert "intake" not in payload and PATIENT_STRINGS[1] not in raw


async def test_a_pending_delivery_keeps_the_form(engine: AsyncEngine) -> None:
    event, event_id = await _publish(engine)
    assert ConsumerName.REFERRAL_TRIAGE in await _owed(engine, event_id)
    await redact_handled(engine)
    payload, _ = await _stored(engine, event_id)
    assert payload["intake"]["patient"]["given_name"] == PATIENT_STRINGS[0]
    async with engine.begin() as conn:  # leave nothing owed behind for other tests
        await conn.execute(text("DELETE FROM queue.deliveries WHERE event_id = :e"), {"e": event_id})
    await redact_handled(engine)
    payload, _ = await _stored(engine, event_id)
    assert "intake" not in payload and payload["intake_id"] == str(event.intake_id)


async def test_an_event_in_a_workers_claim_keeps_the_form_until_handled(
    engine: AsyncEngine, database_url: str, settings: Settings
) -> None:
    """A claim moves the delivery out of the deliveries table while its handler runs; the upkeep
    still sees the event as owed (a claim that lapses puts the delivery back, and its retry needs
    the form)."""
    event, event_id = await _publish(engine)
    await _handle_all(engine, database_url, [webhooks_consumer])  # only triage's delivery is left
    triage = triage_consumer(settings, SystemClock())
    seen_mid_handling: list[str] = []

    async def redact_meanwhile(session: AsyncSession, envelope: Envelope) -> None:
        if envelope.id == event_id:
            await redact_handled(engine)  # another connection, while the delivery is claimed
            payload, _ = await _stored(engine, event_id)
            seen_mid_handling.append(payload["intake"]["patient"]["given_name"])
        await triage.handler(session, envelope)

    await _handle_all(engine, database_url, [Consumer(triage.name, redact_meanwhile)])
    assert seen_mid_handling == [PATIENT_STRINGS[0]]
    assert await _owed(engine, event_id) == {}
    # Handled now: the next pass drops the form.
    await redact_handled(engine)
    payload, _ = await _stored(engine, event_id)
    assert "intake" not in payload and payload["intake_id"] == str(event.intake_id)
