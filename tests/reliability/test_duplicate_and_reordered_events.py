"""Fault 7: duplicate and reordered events injected straight into the queue of a running system:
the same event delivered twice, a copy of an event under a new id, and a referral's status
change arriving before its `referral.created`."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import httpx
import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts.events import PAYLOAD_TYPES, ReferralCreated
from services.common.db.engine import create_engine
from services.common.queue import publish, redeliver
from tests.reliability.harness import (
    Answer,
    System,
    count,
    intake_body,
    report,
    settle_and_check,
    sql,
    wait_for,
)
from tests.webhooks.support import status_changed

pytestmark = pytest.mark.reliability


async def inject(database_url: str, intake_id: str) -> uuid.UUID:
    """Duplicate the intake's events and send a new referral's events in the wrong order;
    return that referral's id."""
    engine = create_engine(database_url, null_pool=True)
    try:
        async with engine.begin() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id, type, subject, payload::text AS payload FROM queue.events "
                        "WHERE payload->>'intake_id' = :i ORDER BY recorded_at"
                    ),
                    {"i": intake_id},
                )
            ).all()
        submitted = next(r for r in rows if r.type == "intake.submitted")
        created = next(r for r in rows if r.type == "referral.created")
        # Once handled, the queue keeps the event without the form (its upkeep drops it): a
        # publisher sending twice sends its own record again, the intake's version.
        async with engine.connect() as conn:
            form = await conn.scalar(
                text(
                    "SELECT body FROM intake.intake_versions "
                    "WHERE intake_id = CAST(:i AS uuid) AND version = 1"
                ),
                {"i": intake_id},
            )
        facts = {
            submitted.type: {**msgspec.json.decode(submitted.payload.encode()), "intake": form},
            created.type: msgspec.json.decode(created.payload.encode()),
        }
        async with AsyncSession(engine) as session, session.begin():
            conn = await session.connection()
            # The same event again (a lost ack), to the consumer that applied it.
            await redeliver(conn, "referral.triage", submitted.id)
            await redeliver(conn, "intake.referral_mirror", created.id)
            # The same facts under a new event id (a publisher that sent twice).
            for row in (submitted, created):
                payload = msgspec.convert(facts[row.type], PAYLOAD_TYPES[row.type], strict=False)
                await publish(session, payload, subject=row.subject)
        first = msgspec.json.decode(created.payload.encode(), type=ReferralCreated)
        now = dt.datetime.now(dt.UTC)
        # A newer referral for the intake, superseding the first...
        newer = msgspec.structs.replace(
            first,
            referral_id=uuid.uuid4(),
            status="requested",
            created_at=now - dt.timedelta(seconds=1),
            supersedes=first.referral_id,
        )
        # ...its acceptance is published (and handled) first...
        async with AsyncSession(engine) as session, session.begin():
            await publish(session, status_changed(newer, "accepted"), subject=newer.referral_id)
        await asyncio.sleep(2.5)  # the mirror applies it (NOTIFY, or the 1 s poll)
        # ... and its creation (older news) arrives afterwards.
        async with AsyncSession(engine) as session, session.begin():
            await publish(session, newer, subject=newer.referral_id)
        return newer.referral_id
    finally:
        await engine.dispose()


def test_duplicates_have_no_second_effect_and_a_late_creation_does_not_undo_a_status(
    fresh_database: str, system: System
) -> None:
    dsn = system.dsn()
    mrn = f"REL-{uuid.uuid4().hex[:12]}"
    resp = httpx.post(
        f"{system.intake}/v1/intakes", json=intake_body(mrn), headers=system.headers, timeout=30
    )
    assert resp.status_code == 201, resp.text
    intake_id = resp.json()["id"]
    acked = [Answer(mrn, 0, 0, 201, intake_id=intake_id)]
    settle_and_check(dsn, acked)
    original = sql(dsn, "SELECT referral_id FROM intake.intakes WHERE id = $1::uuid", intake_id)[0][0]

    newer = asyncio.run(inject(fresh_database, intake_id))

    owed = (
        "SELECT count(*) FROM queue.events e JOIN queue.owed o ON o.event_id = e.id "
        "WHERE e.payload->>'intake_id' = $1"
    )
    assert wait_for(lambda: sql(dsn, owed, intake_id)[0][0] == 0, within=60)
    # Triage: still one referral for the intake (no second from the duplicates).
    referrals = sql(dsn, "SELECT id FROM referral.referrals WHERE intake_id = $1::uuid", intake_id)
    assert [r["id"] for r in referrals] == [original]
    assert count(dsn, acked).duplicated == []
    # The mirror: one row per referral; the newer one kept its later status; the intake
    # shows the newer referral as accepted.
    mirror = {
        r["referral_id"]: r["status"]
        for r in sql(
            dsn,
            "SELECT referral_id, status FROM intake.referral_mirror WHERE intake_id = $1::uuid",
            intake_id,
        )
    }
    assert mirror == {original: "requested", newer: "accepted"}
    intake = sql(
        dsn, "SELECT referral_id, referral_status FROM intake.intakes WHERE id = $1::uuid", intake_id
    )[0]
    assert (intake["referral_id"], intake["referral_status"]) == (newer, "accepted")
    dead = sql(dsn, "SELECT count(*) FROM queue.deliveries WHERE status = 'dead'")[0][0]
    assert dead == 0
    assert system.tracebacks() == []
    system.stop_cleanly()
    report("duplicate and reordered events", injected=6, referrals_after=len(referrals), dead=dead)
