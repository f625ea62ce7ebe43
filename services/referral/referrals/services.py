"""Referral rules: creating a referral from a triaged intake, re-triage on amendment, the
status machine, and reading referrals with a caller's scope applied."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

import structlog
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.auth import Principal, Role
from services.common.events import IntakeSubmitted, ReferralCreated, ReferralStatusChanged
from services.common.pagination import bad_cursor
from services.common.queue import publish
from services.common.settings import Settings
from services.common.vocabulary import ACTIONS as ACTIONS  # re-exported from their old home
from services.common.vocabulary import OPEN_STATUSES as OPEN_STATUSES
from services.common.vocabulary import PRIORITY_RANK as PRIORITY_RANK
from services.common.vocabulary import Destination, Priority
from services.common.vocabulary import ReferralStatus as ReferralStatus
from services.referral.db.models import FollowUp, Referral, ReferralHistory
from services.referral.referrals.schemas import (
    FollowUpOut,
    HistoryEntry,
    PatientSnapshot,
    ReasonOut,
    ReferralOut,
)
from services.referral.triage import TriageOutcome, TriageThresholds, triage

log = structlog.get_logger(__name__)

PRIORITIES = tuple(p.value for p in Priority)
DESTINATIONS = tuple(d.value for d in Destination)
STATUSES = tuple(s.value for s in ReferralStatus)
TRIAGE_ACTOR = "triage"


def thresholds_from(settings: Settings) -> TriageThresholds:
    return TriageThresholds(
        chronic_weeks=settings.chronic_weeks,
        severe_intensity=settings.severe_pain_threshold,
        procedure_window_weeks=settings.procedure_window_weeks,
    )


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


def _reasons(outcome: TriageOutcome) -> list[dict[str, str]]:
    return [{"code": r.code, "text": r.text, "source": r.source} for r in outcome.reasons]


async def record_status(
    session: AsyncSession,
    referral: Referral,
    status: str,
    *,
    by: str,
    now: dt.datetime,
    note: str | None = None,
) -> None:
    """Move a referral to `status`, append its history and emit `referral.status_changed`."""
    previous = referral.status
    referral.status = status
    referral.updated_at = now
    if status not in OPEN_STATUSES:
        referral.closed_at = now
    # Through the collection, so the referral shown after the move lists it.
    referral.history.append(ReferralHistory(status=status, at=now, by=by, note=note))
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
    note: str | None = None,
    supersedes: Referral | None = None,
) -> Referral:
    status = initial_status(destination)
    referral = Referral(
        id=uuid.uuid4(),
        intake_id=intake_id,
        intake_version=intake_version,
        patient=patient,
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
        history=[ReferralHistory(status=status, at=now, by=by, note=note)],
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


def patient_snapshot(event: IntakeSubmitted) -> dict[str, Any]:
    p = event.intake.patient
    return {
        "given_name": p.given_name,
        "family_name": p.family_name,
        "birth_date": p.birth_date.isoformat(),
        "mrn": p.mrn,
        "patient_id": str(event.patient_id),  # the intake service's patient (FHIR references it)
    }


async def open_referral_for(session: AsyncSession, intake_id: uuid.UUID) -> Referral | None:
    return (
        await session.execute(
            select(Referral)
            .where(Referral.intake_id == intake_id, Referral.status.in_(OPEN_STATUSES))
            .order_by(Referral.created_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def latest_triaged_version(session: AsyncSession, intake_id: uuid.UUID) -> int | None:
    return (
        await session.execute(
            select(func.max(Referral.intake_version)).where(Referral.intake_id == intake_id)
        )
    ).scalar_one()


async def triage_intake(
    session: AsyncSession, event: IntakeSubmitted, *, now: dt.datetime, settings: Settings, amended: bool
) -> Referral | None:
    """Triage an intake (or its amendment) into a referral.

    On an amendment with the same outcome, the open referral keeps its place in the worklist and
    only its reasons are brought up to date; with a different outcome it is cancelled as
    superseded and a new referral, linked to it, takes over.

    Events may arrive out of order (a retried version 1 after version 2): a version no newer than
    one already triaged changes nothing and returns None.
    """
    latest = await latest_triaged_version(session, event.intake_id)
    if latest is not None and event.intake_version <= latest:
        log.info(
            "intake_version_already_triaged",
            intake_id=str(event.intake_id),
            intake_version=event.intake_version,
            latest_version=latest,
        )
        return None
    outcome = triage(event.intake, now.date(), thresholds_from(settings))
    reasons = _reasons(outcome)
    current = await open_referral_for(session, event.intake_id) if amended else None
    if current is not None and (current.destination, current.priority) == (
        outcome.destination.value,
        outcome.priority.value,
    ):
        current.reasons = reasons
        current.intake_version = event.intake_version
        current.patient = patient_snapshot(event)
        current.ruleset_version = outcome.ruleset_version
        current.updated_at = now
        current.history.append(
            ReferralHistory(
                status=current.status,
                at=now,
                by=TRIAGE_ACTOR,
                note=f"intake amended (version {event.intake_version}); same outcome, reasons updated",
            )
        )
        await session.flush()
        return current
    referral = await create_referral(
        session,
        intake_id=event.intake_id,
        intake_version=event.intake_version,
        patient=patient_snapshot(event),
        destination=outcome.destination.value,
        priority=outcome.priority.value,
        reasons=reasons,
        ruleset_version=outcome.ruleset_version,
        now=now,
        settings=settings,
        by=TRIAGE_ACTOR,
        note=f"triaged intake version {event.intake_version}",
        supersedes=current,
    )
    if current is not None:
        await record_status(
            session,
            current,
            "cancelled",
            by=TRIAGE_ACTOR,
            now=now,
            note=f"superseded by referral {referral.id} after intake amendment",
        )
        current.close_reason = "superseded by amendment"
    return referral


# -- reading ---------------------------------------------------------------------------------


_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


def scoped(query: _Query, principal: Principal) -> _Query:
    """A specialist sees its own destination's referrals only (any query over `Referral`, such
    as follow-ups joined to their referral)."""
    if principal.role is Role.specialist:
        own = principal.destination.value if principal.destination else None
        return query.where(Referral.destination == own)
    return query


def worklist_query(
    principal: Principal,
    *,
    destination: str | None,
    status: Sequence[str] | None,
    priority: str | None,
    intake_id: uuid.UUID | None,
    overdue: bool | None,
    now: dt.datetime,
    after: list[Any] | None,
    limit: int,
) -> Select[Referral]:
    query = scoped(select(Referral), principal)
    if destination:
        query = query.where(Referral.destination == destination)
    if status:
        query = query.where(Referral.status.in_(list(status)))
    if priority:
        query = query.where(Referral.priority == priority)
    if intake_id:
        query = query.where(Referral.intake_id == intake_id)
    if overdue is True:
        query = query.where(Referral.due_by < now, Referral.status.in_(OPEN_STATUSES))
    elif overdue is False:
        query = query.where(or_(Referral.due_by >= now, Referral.status.not_in(OPEN_STATUSES)))
    if after is not None:
        rank, due_by, rid = worklist_cursor(after)
        query = query.where(
            or_(
                Referral.priority_rank > rank,
                and_(Referral.priority_rank == rank, Referral.due_by > due_by),
                and_(Referral.priority_rank == rank, Referral.due_by == due_by, Referral.id > rid),
            )
        )
    return query.order_by(Referral.priority_rank, Referral.due_by, Referral.id).limit(limit + 1)


def worklist_cursor(key: list[Any]) -> tuple[int, dt.datetime, uuid.UUID]:
    """The (priority rank, due_by, id) a worklist cursor carries; a 422 naming `cursor` if it
    carries something else (another list's cursor, say)."""
    try:
        rank, due_by, rid = key
        parsed = int(rank), dt.datetime.fromisoformat(due_by), uuid.UUID(rid)
    except (TypeError, ValueError) as exc:
        raise bad_cursor() from exc
    if parsed[1].tzinfo is None:
        raise bad_cursor()
    return parsed


def cursor_key(referral: Referral) -> list[Any]:
    return [referral.priority_rank, referral.due_by.isoformat(), str(referral.id)]


def follow_up_out(f: FollowUp) -> FollowUpOut:
    return FollowUpOut(
        id=f.id,
        referral_id=f.referral_id,
        due_on=f.due_on,
        status=f.status,
        emitted_at=f.emitted_at,
        done_at=f.done_at,
        done_by=f.done_by,
    )


def patient_out(snapshot: dict[str, Any]) -> PatientSnapshot:
    return PatientSnapshot(
        given_name=snapshot["given_name"],
        family_name=snapshot["family_name"],
        birth_date=dt.date.fromisoformat(snapshot["birth_date"]),
        mrn=snapshot.get("mrn"),
    )


def to_out(referral: Referral, now: dt.datetime) -> ReferralOut:
    return ReferralOut(
        id=referral.id,
        intake_id=referral.intake_id,
        intake_version=referral.intake_version,
        patient=patient_out(referral.patient),
        destination=referral.destination,
        priority=referral.priority,
        status=referral.status,
        reasons=[ReasonOut(**r) for r in referral.reasons],
        ruleset_version=referral.ruleset_version,
        created_at=referral.created_at,
        updated_at=referral.updated_at,
        due_by=referral.due_by,
        overdue=referral.status in OPEN_STATUSES and referral.due_by < now,
        appointment_at=referral.appointment_at,
        close_reason=referral.close_reason,
        history=[HistoryEntry(status=h.status, at=h.at, by=h.by, note=h.note) for h in referral.history],
        supersedes=referral.supersedes,
        superseded_by=referral.superseded_by,
        follow_ups=[follow_up_out(f) for f in referral.follow_ups],
        allowed_actions=allowed_actions(referral.status),
    )
