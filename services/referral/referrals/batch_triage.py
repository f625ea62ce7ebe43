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
from services.common.queue.publish import publish_many
from services.common.settings import Settings
from services.referral.db.models import Referral, ReferralHistory
from services.referral.referrals.lifecycle import TRIAGE_ACTOR, created_event, log_created
from services.referral.referrals.snapshots import triaged
from services.referral.referrals.triaging import already_triaged, thresholds_from, triage_date
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
        if already_triaged(event, latest.get(event.intake_id)):
            continue
        outcome = triage(event.intake, triage_date(event, settings), thresholds)
        row = triaged(event, outcome).row(now=now, settings=settings)
        referrals.append(row)
        history.append(
            {
                "referral_id": row["id"],
                "status": row["status"],
                "at": now,
                "by": TRIAGE_ACTOR,
                "by_id": None,
                "note": f"triaged intake version {event.intake_version}",
            }
        )
        created.append((created_event(row), row["id"]))
    if not referrals:
        return
    await conn.execute(_INSERT_REFERRALS, referrals)
    await conn.execute(_INSERT_HISTORY, history)
    await publish_many(conn, created)
    for row in referrals:
        log_created(row)
