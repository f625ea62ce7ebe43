"""Triage of a batch of new intakes (the triage consumer's batch handler): the same rows and
events as `triaging.triage_intake` for each, in four statements for the whole batch (the intakes'
latest triaged versions; the referrals with their first history rows; their events), on the
driver's connection (`services.common.db.driver`).

Only first submissions of intakes that appear once in the batch go this way; amendments (and an
intake seen twice in a batch) are triaged one by one, in order, with `triage_intake`: an
amendment reads and changes the open referral, and two versions of one intake depend on each
other's outcome."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts.events import IntakeSubmitted, ReferralCreated
from services.common.db.driver import Statement, driver_of
from services.common.queue.publish import publish_many
from services.common.settings import Settings
from services.referral.referrals.lifecycle import TRIAGE_ACTOR, created_event, log_created
from services.referral.referrals.snapshots import triaged
from services.referral.referrals.triaging import already_triaged, thresholds_from, triage_date
from services.referral.triage import triage

log = structlog.get_logger(__name__)

# Each intake's newest triaged version (none: NULL): one index lookup per intake, whatever the
# planner knows of the table (OFFSET 0 keeps the lateral subquery a nested loop).
LATEST_VERSIONS = Statement(
    """
    SELECT wanted.id, latest.version
    FROM unnest(CAST(:intake_ids AS uuid[])) AS wanted(id)
    CROSS JOIN LATERAL (
        SELECT max(r.intake_version) AS version FROM referral.referrals r
        WHERE r.intake_id = wanted.id OFFSET 0
    ) AS latest
    """
)

# The batch's referrals (`ReferralDraft.row` each, as one JSON array) and each one's first
# history row, in one statement on the driver's connection.
_INSERT_REFERRALS_AND_HISTORY = Statement(
    """
    WITH new AS (
        INSERT INTO referral.referrals (id, intake_id, intake_version, patient, clinical, destination,
            priority, priority_rank, status, reasons, ruleset_version, created_at, updated_at, due_by,
            supersedes, amendment_of)
        SELECT id, intake_id, intake_version, patient, clinical, destination, priority, priority_rank,
            status, reasons, ruleset_version, created_at, updated_at, due_by, supersedes, amendment_of
        FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(id uuid, intake_id uuid, intake_version int,
            patient jsonb, clinical jsonb, destination text, priority text, priority_rank int, status text,
            reasons jsonb, ruleset_version text, created_at timestamptz, updated_at timestamptz,
            due_by timestamptz, supersedes uuid, amendment_of uuid)
        RETURNING id, status, intake_version
    )
    INSERT INTO referral.referral_history (referral_id, status, at, by, by_id, note)
    SELECT new.id, new.status, CAST(:at AS timestamptz), CAST(:by AS varchar), NULL,
           'triaged intake version ' || new.intake_version
    FROM new
    """
)


async def triage_new_intakes(
    session: AsyncSession, events: Sequence[IntakeSubmitted], *, now: dt.datetime, settings: Settings
) -> None:
    """Triage first submissions of distinct intakes into referrals (a version no newer than one
    already triaged changes nothing, as in `triage_intake`)."""
    driver = await driver_of(session)
    rows = await driver.fetch(LATEST_VERSIONS, {"intake_ids": [e.intake_id for e in events]})
    latest = {row["id"]: row["version"] for row in rows}
    thresholds = thresholds_from(settings)
    referrals: list[dict[str, Any]] = []
    created: list[tuple[ReferralCreated, uuid.UUID]] = []
    for event in events:
        if already_triaged(event, latest.get(event.intake_id)):
            continue
        outcome = triage(event.intake, triage_date(event, settings), thresholds)
        row = triaged(event, outcome).row(now=now, settings=settings)
        referrals.append(row)
        created.append((created_event(row), row["id"]))
    if not referrals:
        return
    await driver.execute(
        _INSERT_REFERRALS_AND_HISTORY,
        {"rows": msgspec.json.encode(referrals).decode(), "at": now, "by": TRIAGE_ACTOR},
    )
    await publish_many(driver.conn, created)
    for row in referrals:
        log_created(row)
