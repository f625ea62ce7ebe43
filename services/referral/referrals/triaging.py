"""Creating referrals from triaged intakes (events may come late, retried or out of order); an
amended intake goes to the amendment policy."""

from __future__ import annotations

import datetime as dt
import uuid

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import clinic_today
from services.common.contracts.events import IntakeSubmitted
from services.common.contracts.vocabulary import OPEN_STATUSES
from services.common.settings import Settings
from services.referral.db.models import Referral
from services.referral.referrals.amendments import amend
from services.referral.referrals.lifecycle import TRIAGE_ACTOR, create_referral
from services.referral.referrals.snapshots import triaged
from services.referral.triage import TriageThresholds, triage

log = structlog.get_logger(__name__)


def thresholds_from(settings: Settings) -> TriageThresholds:
    return TriageThresholds(
        chronic_weeks=settings.chronic_weeks,
        severe_intensity=settings.severe_pain_threshold,
        procedure_window_weeks=settings.procedure_window_weeks,
        urgent_hours=settings.sla_urgent_hours,
    )


async def open_referrals_for(session: AsyncSession, intake_id: uuid.UUID) -> list[Referral]:
    """The intake's open referrals, newest first: one, or one and its AMEND-HOLD review."""
    rows = await session.execute(
        select(Referral)
        .where(Referral.intake_id == intake_id, Referral.status.in_(OPEN_STATUSES))
        .order_by(Referral.created_at.desc())
    )
    return list(rows.scalars())


async def latest_triaged_version(session: AsyncSession, intake_id: uuid.UUID) -> int | None:
    return (
        await session.execute(
            select(func.max(Referral.intake_version)).where(Referral.intake_id == intake_id)
        )
    ).scalar_one()


def already_triaged(event: IntakeSubmitted, latest: int | None) -> bool:
    """Whether a version no newer than this one was triaged already (`latest`, the intake's
    newest triaged version): events may arrive late, retried or out of order, and such a
    version changes nothing."""
    if latest is None or event.intake_version > latest:
        return False
    log.info(
        "intake_version_already_triaged",
        intake_id=str(event.intake_id),
        intake_version=event.intake_version,
        latest_version=latest,
    )
    return True


def triage_date(event: IntakeSubmitted, settings: Settings) -> dt.date:
    """The clinic's date when this intake version was submitted: triage counts durations and
    procedure days from it, so a retry or a dead-letter replay days later routes the same."""
    return clinic_today(event.submitted_at, settings.clinic_time_zone)


async def triage_intake(
    session: AsyncSession, event: IntakeSubmitted, *, now: dt.datetime, settings: Settings, amended: bool
) -> Referral | None:
    """Triage an intake (or its amendment) into a referral, under the current ruleset, as of
    the clinic's date when the version was submitted.

    An amendment is compared with the open referral by the amendment policy (`amend`).

    Events may arrive out of order (a retried version 1 after version 2): a version no newer than
    one already triaged changes nothing and returns None.
    """
    if already_triaged(event, await latest_triaged_version(session, event.intake_id)):
        return None
    outcome = triage(event.intake, triage_date(event, settings), thresholds_from(settings))
    if amended:
        open_now = await open_referrals_for(session, event.intake_id)
        if open_now:
            return await amend(session, event, outcome, open_now, now=now, settings=settings)
    return await create_referral(
        session,
        triaged(event, outcome),
        now=now,
        settings=settings,
        by=TRIAGE_ACTOR,
        note=f"triaged intake version {event.intake_version}",
    )
