"""Triage of a batch of new intakes (the triage consumer's batch handler): the same rows and
events as `triaging.triage_intake` for each, in four statements for the whole batch (the intakes'
latest triaged versions, the referrals, their first history rows, their events), Core only.

Only first submissions of intakes that appear once in the batch go this way; amendments (and an
intake seen twice in a batch) are triaged one by one, in order, with `triage_intake`: an
amendment reads and changes the open referral, and two versions of one intake depend on each
other's outcome."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import ARRAY, Table, Uuid, bindparam, func, literal_column, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts.events import IntakeSubmitted, ReferralCreated
from services.common.contracts.vocabulary import PRIORITY_RANK
from services.common.queue.publish import publish_many
from services.common.settings import Settings
from services.referral.db.models import Referral, ReferralHistory
from services.referral.referrals.lifecycle import TRIAGE_ACTOR, initial_status, service_level
from services.referral.referrals.snapshots import clinical_picture, patient_snapshot, triage_reasons
from services.referral.referrals.triaging import thresholds_from, triage_date
from services.referral.triage import triage

log = structlog.get_logger(__name__)

_REFERRALS: Table = Referral.__table__  # type: ignore[assignment]
_HISTORY: Table = ReferralHistory.__table__  # type: ignore[assignment]


def _latest_versions() -> Any:
    """Each intake's newest triaged version (none: no row): one index lookup per intake, whatever
    the planner knows of the table (OFFSET 0 keeps the lateral subquery a nested loop)."""
    wanted = (
        func.unnest(bindparam("intake_ids", type_=ARRAY(Uuid())))
        .table_valued("id")
        .render_derived(name="wanted")
    )
    latest = (
        select(func.max(_REFERRALS.c.intake_version).label("version"))
        .where(_REFERRALS.c.intake_id == wanted.c.id)
        .offset(literal_column("0"))
        .lateral("latest")
    )
    return select(wanted.c.id, latest.c.version).select_from(wanted).join(latest, true())


LATEST_VERSIONS = _latest_versions()
_INSERT_REFERRALS = _REFERRALS.insert()
_INSERT_HISTORY = _HISTORY.insert()


async def triage_new_intakes(
    session: AsyncSession, events: Sequence[IntakeSubmitted], *, now: dt.datetime, settings: Settings
) -> None:
    """Triage first submissions of distinct intakes into referrals (a version no newer than one
    already triaged changes nothing, as in `triage_intake`)."""
    conn = await session.connection()
    latest = dict(
        (await conn.execute(LATEST_VERSIONS, {"intake_ids": [e.intake_id for e in events]})).tuples().all()
    )
    thresholds = thresholds_from(settings)
    referrals: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    created: list[tuple[ReferralCreated, uuid.UUID]] = []
    for event in events:
        newest = latest.get(event.intake_id)
        if newest is not None and event.intake_version <= newest:
            log.info(
                "intake_version_already_triaged",
                intake_id=str(event.intake_id),
                intake_version=event.intake_version,
                latest_version=newest,
            )
            continue
        outcome = triage(event.intake, triage_date(event, settings), thresholds)
        destination, priority = outcome.destination.value, outcome.priority.value
        reasons = triage_reasons(outcome)
        status = initial_status(destination).value
        referral_id = uuid.uuid4()
        due_by = now + service_level(priority, settings)
        referrals.append(
            {
                "id": referral_id,
                "intake_id": event.intake_id,
                "intake_version": event.intake_version,
                "patient": patient_snapshot(event),
                "clinical": clinical_picture(event),
                "destination": destination,
                "priority": priority,
                "priority_rank": PRIORITY_RANK[priority],
                "status": status,
                "reasons": reasons,
                "ruleset_version": outcome.ruleset_version,
                "created_at": now,
                "updated_at": now,
                "due_by": due_by,
                "supersedes": None,
                "amendment_of": None,
            }
        )
        history.append(
            {
                "referral_id": referral_id,
                "status": status,
                "at": now,
                "by": TRIAGE_ACTOR,
                "by_id": None,
                "note": f"triaged intake version {event.intake_version}",
            }
        )
        payload = ReferralCreated(
            referral_id=referral_id,
            intake_id=event.intake_id,
            intake_version=event.intake_version,
            destination=destination,
            priority=priority,
            status=status,
            due_by=due_by,
            created_at=now,
            reason_codes=[r["code"] for r in reasons],
            supersedes=None,
            reasons=[{"code": r["code"], "text": r["text"]} for r in reasons],
        )
        created.append((payload, referral_id))
    if not referrals:
        return
    await conn.execute(_INSERT_REFERRALS, referrals)
    await conn.execute(_INSERT_HISTORY, history)
    await publish_many(conn, created)
    for row in referrals:
        log.info(
            "referral_created",
            referral_id=str(row["id"]),
            intake_id=str(row["intake_id"]),
            destination=row["destination"],
            priority=row["priority"],
            deciding_reason=row["reasons"][0]["code"] if row["reasons"] else None,
        )
