"""The closed loop: referral events, through the real queue, keep the intake's `status` and
`referral` current, whatever order they arrive in and however often."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.contracts.events import Payload, ReferralCreated, ReferralStatusChanged
from services.common.queue import publish
from services.common.settings import Settings
from services.intake.app import create_app
from services.intake.mirror import CONSUMER_NAME
from tests.conftest import eventually, plan_without_statistics, query_value
from tests.intake.conftest import intake_form

T0 = datetime.datetime(2026, 11, 1, 9, 0, tzinfo=datetime.UTC)


@pytest.fixture
async def running(settings: Settings, engine: AsyncEngine) -> AsyncIterator[AsyncTestClient[Any]]:
    """The intake app with its consumers running."""
    async with AsyncTestClient(create_app(settings, engine, run_workers=True)) as test_client:
        yield test_client


async def deliver(engine: AsyncEngine, payload: Payload, subject: uuid.UUID) -> None:
    """Publish one event and wait until the mirror has applied it."""
    await deliver_together(engine, [(payload, subject)])


async def deliver_together(engine: AsyncEngine, events: list[tuple[Payload, uuid.UUID]]) -> None:
    """Publish the events in one transaction and wait until the mirror has applied every one."""
    async with AsyncSession(engine) as session:
        ids = [await publish(session, payload, subject=subject) for payload, subject in events]
        await session.commit()

    async def all_applied() -> bool:
        applied = await query_value(
            engine,
            "SELECT count(*) FROM queue.inbox WHERE consumer = :c AND event_id = ANY(:e)",
            c=CONSUMER_NAME,
            e=ids,
        )
        return bool(applied == len(ids))

    types = ", ".join(payload.TYPE for payload, _ in events)
    await eventually(all_applied, within=15, what=f"the mirror applied {types}")


def shown(
    referral_id: uuid.UUID, destination: str, priority: str, status: str, *, intake_version: int
) -> dict[str, Any]:
    """The referral as an intake shows it."""
    return {
        "id": str(referral_id),
        "destination": destination,
        "priority": priority,
        "status": status,
        "intake_version": intake_version,
    }


def created(intake_id: str, referral_id: uuid.UUID, **changes: Any) -> ReferralCreated:
    fields: dict[str, Any] = {
        "referral_id": referral_id,
        "intake_id": uuid.UUID(intake_id),
        "intake_version": 1,
        "destination": "pain_management",
        "priority": "routine",
        "status": "requested",
        "due_by": T0 + datetime.timedelta(days=14),
        "created_at": T0,
        "reason_codes": ["CHRONIC"],
        **changes,
    }
    return ReferralCreated(**fields)


def changed(intake_id: str, referral_id: uuid.UUID, status: str, at: datetime.datetime, **more: Any) -> Any:
    fields: dict[str, Any] = {
        "referral_id": referral_id,
        "intake_id": uuid.UUID(intake_id),
        "destination": "pain_management",
        "priority": "routine",
        "status": status,
        "previous_status": "requested",
        "changed_at": at,
        "changed_by": "pain-desk",
        **more,
    }
    return ReferralStatusChanged(**fields)


async def _intake(client: AsyncTestClient[Any], headers: dict[str, str]) -> dict[str, Any]:
    return (await client.post("/v1/intakes", json=intake_form(), headers=headers)).json()


async def _read(client: AsyncTestClient[Any], headers: dict[str, str], intake_id: str) -> dict[str, Any]:
    return (await client.get(f"/v1/intakes/{intake_id}", headers=headers)).json()


async def test_referral_created_routes_the_intake(
    running: AsyncTestClient[Any], front_desk: dict[str, str], engine: AsyncEngine
) -> None:
    intake = await _intake(running, front_desk)
    referral_id = uuid.uuid4()
    await deliver(engine, created(intake["id"], referral_id), uuid.UUID(intake["id"]))

    seen = await _read(running, front_desk, intake["id"])
    assert seen["status"] == "routed"
    assert seen["referral"] == shown(referral_id, "pain_management", "routine", "requested", intake_version=1)
    routed = (await running.get("/v1/intakes", params={"mrn": intake["patient"]["mrn"], "status": "routed"},
                                headers=front_desk)).json()  # fmt: skip
    assert [i["id"] for i in routed["items"]] == [intake["id"]]


async def test_status_changes_follow_and_late_ones_are_ignored(
    running: AsyncTestClient[Any], front_desk: dict[str, str], engine: AsyncEngine
) -> None:
    intake = await _intake(running, front_desk)
    subject, rid = uuid.UUID(intake["id"]), uuid.uuid4()
    hour = datetime.timedelta(hours=1)
    await deliver(engine, created(intake["id"], rid), subject)
    await deliver(engine, changed(intake["id"], rid, "scheduled", T0 + 2 * hour), subject)
    await deliver(engine, changed(intake["id"], rid, "accepted", T0 + hour), subject)  # late

    assert (await _read(running, front_desk, intake["id"]))["referral"]["status"] == "scheduled"


async def test_a_status_change_before_its_creation_is_kept(
    running: AsyncTestClient[Any], front_desk: dict[str, str], engine: AsyncEngine
) -> None:
    intake = await _intake(running, front_desk)
    subject, rid = uuid.UUID(intake["id"]), uuid.uuid4()
    await deliver(engine, changed(intake["id"], rid, "accepted", T0 + datetime.timedelta(minutes=5)), subject)
    assert (await _read(running, front_desk, intake["id"]))["referral"]["status"] == "accepted"

    await deliver(engine, created(intake["id"], rid), subject)
    seen = await _read(running, front_desk, intake["id"])
    assert seen["referral"]["status"] == "accepted"
    assert seen["referral"]["intake_version"] == 1


async def test_the_same_event_twice_changes_nothing(
    running: AsyncTestClient[Any], front_desk: dict[str, str], engine: AsyncEngine
) -> None:
    intake = await _intake(running, front_desk)
    subject, rid = uuid.UUID(intake["id"]), uuid.uuid4()
    await deliver(engine, created(intake["id"], rid), subject)
    once = await _read(running, front_desk, intake["id"])
    await deliver(engine, created(intake["id"], rid), subject)
    assert await _read(running, front_desk, intake["id"]) == once


@pytest.mark.parametrize("newer_first", [False, True])
async def test_a_newer_referral_supersedes_the_summary(
    running: AsyncTestClient[Any], front_desk: dict[str, str], engine: AsyncEngine, newer_first: bool
) -> None:
    intake = await _intake(running, front_desk)
    subject, old, new = uuid.UUID(intake["id"]), uuid.uuid4(), uuid.uuid4()
    later = T0 + datetime.timedelta(days=1)
    events = [
        created(intake["id"], old),
        created(intake["id"], new, intake_version=2, destination="urgent_care", priority="urgent",
                created_at=later, supersedes=old),
        changed(intake["id"], old, "cancelled", later, superseded_by=new),
    ]  # fmt: skip
    for event in reversed(events) if newer_first else events:
        await deliver(engine, event, subject)

    seen = await _read(running, front_desk, intake["id"])
    assert seen["status"] == "routed"
    assert seen["referral"] == shown(new, "urgent_care", "urgent", "requested", intake_version=2)


async def test_a_batch_of_events_arriving_together_ends_as_one_by_one(
    running: AsyncTestClient[Any], front_desk: dict[str, str], engine: AsyncEngine
) -> None:
    """Events published together are claimed and applied as one batch: two intakes, a referral
    created and moved twice (one move late) in the same batch, a superseding referral, and an
    event for an intake this service does not know. Each intake ends as if applied one by one."""
    first, second = await _intake(running, front_desk), await _intake(running, front_desk)
    a, old, new = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    hour, later = datetime.timedelta(hours=1), T0 + datetime.timedelta(days=1)
    events = [
        (created(first["id"], a), first["id"]),
        (changed(first["id"], a, "scheduled", T0 + 2 * hour), first["id"]),
        (changed(first["id"], a, "accepted", T0 + hour), first["id"]),  # late
        (changed(second["id"], old, "cancelled", later, superseded_by=new), second["id"]),
        (created(second["id"], new, intake_version=2, destination="urgent_care", priority="urgent",
                 created_at=later, supersedes=old), second["id"]),
        (created(second["id"], old), second["id"]),
        (created(str(uuid.uuid4()), uuid.uuid4()), first["id"]),  # an intake not ours
    ]  # fmt: skip
    await deliver_together(engine, [(event, uuid.UUID(subject)) for event, subject in events])

    one = await _read(running, front_desk, first["id"])
    assert (one["status"], one["referral"]["id"], one["referral"]["status"]) == (
        "routed",
        str(a),
        "scheduled",
    )
    two = await _read(running, front_desk, second["id"])
    assert two["referral"] == shown(new, "urgent_care", "urgent", "requested", intake_version=2)


@pytest.mark.parametrize("query", ["INTAKE_REFERRALS", "BATCH_REFERRALS"])
async def test_the_summary_reads_one_intakes_referrals_by_index_even_without_statistics(
    engine: AsyncEngine, query: str
) -> None:
    """The summary's query (one intake's referrals, or a batch's intakes' referrals) on a fresh
    copy of the mirror table (20,000 referrals, never analysed, as on a server whose autovacuum
    has not run yet) is an index lookup: no plan scans every referral."""
    from sqlalchemy.dialects import postgresql

    from services.intake import mirror

    statement = getattr(mirror, query)
    sql = str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": False}))
    sql = sql.replace("%(intake_id)s", "CAST(:intake_id AS uuid)").replace(
        "%(intake_ids)s", "CAST(:intake_ids AS uuid[])"
    )
    ids = [str(uuid.uuid4()) for _ in range(50)]
    text_plan = await plan_without_statistics(
        engine,
        "intake.referral_mirror",
        "INSERT INTO pg_temp.referral_mirror (referral_id, intake_id, destination, priority, status, "
        "status_at) SELECT gen_random_uuid(), gen_random_uuid(), 'pain_management', 'routine', "
        "'requested', now() FROM generate_series(1, 20000)",
        sql,
        {"intake_id": ids[0], "intake_ids": ids},
    )
    assert "Seq Scan" not in text_plan, text_plan
    assert "Index" in text_plan, text_plan
