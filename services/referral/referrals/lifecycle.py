"""A referral's lifecycle in the database: created (its service level and first status) and
moved from status to status (each move in its history and announced)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts.events import ReferralCreated, ReferralStatusChanged
from services.common.contracts.vocabulary import (
    ACTIONS,
    OPEN_STATUSES,
    PRIORITY_RANK,
    Destination,
    Priority,
    ReferralStatus,
)
from services.common.queue import publish
from services.common.settings import Settings
from services.referral.db.models import Referral, ReferralHistory

log = structlog.get_logger(__name__)

PRIORITIES = tuple(p.value for p in Priority)
DESTINATIONS = tuple(d.value for d in Destination)
STATUSES = tuple(s.value for s in ReferralStatus)
TRIAGE_ACTOR = "triage"


def service_level(priority: str, settings: Settings) -> dt.timedelta:
    if priority == Priority.STAT:
        return dt.timedelta(minutes=settings.sla_stat_minutes)
    if priority == Priority.URGENT:
        return dt.timedelta(hours=settings.sla_urgent_hours)
    return dt.timedelta(days=settings.sla_routine_days)


def allowed_actions(status: str) -> list[str]:
    return [action.value for action, (sources, _) in ACTIONS.items() if status in sources]


def initial_status(destination: str) -> ReferralStatus:
    if destination == Destination.CLINICIAN_REVIEW:
        return ReferralStatus.NEEDS_REVIEW
    return ReferralStatus.REQUESTED


async def record_status(
    session: AsyncSession,
    referral: Referral,
    status: str,
    *,
    by: str,
    now: dt.datetime,
    note: str | None = None,
    by_id: uuid.UUID | None = None,
) -> None:
    """Move a referral to `status`, append its history and emit `referral.status_changed`."""
    previous = referral.status
    referral.status = status
    referral.updated_at = now
    if status not in OPEN_STATUSES:
        referral.closed_at = now
    # Through the collection, so the referral shown after the move lists it.
    referral.history.append(ReferralHistory(status=status, at=now, by=by, by_id=by_id, note=note))
    await session.flush()
    await publish(
        session,
        ReferralStatusChanged(
            referral_id=referral.id,
            intake_id=referral.intake_id,
            destination=referral.destination,
            priority=referral.priority,
            status=status,
            previous_status=previous,
            changed_at=now,
            changed_by=by,
            changed_by_id=by_id,
            due_by=referral.due_by,
            superseded_by=referral.superseded_by,
        ),
        subject=referral.id,
    )


async def create_referral(
    session: AsyncSession,
    *,
    intake_id: uuid.UUID,
    intake_version: int,
    patient: dict[str, Any],
    destination: str,
    priority: str,
    reasons: list[dict[str, str]],
    ruleset_version: str,
    now: dt.datetime,
    settings: Settings,
    by: str,
    by_id: uuid.UUID | None = None,
    note: str | None = None,
    supersedes: Referral | None = None,
    amendment_of: Referral | None = None,
    clinical: dict[str, Any] | None = None,
) -> Referral:
    status = initial_status(destination)
    referral = Referral(
        id=uuid.uuid4(),
        intake_id=intake_id,
        intake_version=intake_version,
        patient=patient,
        clinical=clinical,
        destination=destination,
        priority=priority,
        priority_rank=PRIORITY_RANK[priority],
        status=status,
        reasons=reasons,
        ruleset_version=ruleset_version,
        created_at=now,
        updated_at=now,
        due_by=now + service_level(priority, settings),
        supersedes=supersedes.id if supersedes else None,
        amendment_of=amendment_of.id if amendment_of else None,
        history=[ReferralHistory(status=status, at=now, by=by, by_id=by_id, note=note)],
        follow_ups=[],
    )
    session.add(referral)
    await session.flush()  # the new row must exist before the old one points at it
    if supersedes is not None:
        supersedes.superseded_by = referral.id
        await session.flush()
    await publish(
        session,
        ReferralCreated(
            referral_id=referral.id,
            intake_id=intake_id,
            intake_version=intake_version,
            destination=destination,
            priority=priority,
            status=status,
            due_by=referral.due_by,
            created_at=now,
            reason_codes=[r["code"] for r in reasons],
            supersedes=referral.supersedes,
            reasons=[{"code": r["code"], "text": r["text"]} for r in reasons],
        ),
        subject=referral.id,
    )
    log.info(
        "referral_created",
        referral_id=str(referral.id),
        intake_id=str(intake_id),
        destination=destination,
        priority=priority,
        deciding_reason=reasons[0]["code"] if reasons else None,
    )
    return referral
