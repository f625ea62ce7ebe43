"""Referral rules: creating a referral from a triaged intake, re-triage on amendment, the
status machine, and reading referrals with a caller's scope applied."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec
import structlog
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.auth import Principal, Role
from services.common.clock import clinic_today
from services.common.contracts.events import (
    IntakeSubmitted,
    ReferralAmended,
    ReferralCreated,
    ReferralStatusChanged,
)
from services.common.contracts.vocabulary import ACTIONS as ACTIONS  # re-exported from their old home
from services.common.contracts.vocabulary import OPEN_STATUSES as OPEN_STATUSES
from services.common.contracts.vocabulary import PRIORITY_RANK as PRIORITY_RANK
from services.common.contracts.vocabulary import Destination, Priority
from services.common.contracts.vocabulary import ReferralStatus as ReferralStatus
from services.common.http.pagination import bad_cursor
from services.common.queue import publish
from services.common.settings import Settings
from services.referral.db.models import FollowUp, Referral, ReferralHistory
from services.referral.referrals.schemas import (
    ClinicalPicture,
    Contact,
    FollowUpOut,
    HistoryEntry,
    PatientSnapshot,
    ReasonOut,
    ReferralOut,
)
from services.referral.triage import TriageOutcome, TriageThresholds, triage, urgency

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
        urgent_hours=settings.sla_urgent_hours,
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


async def patient_ids_by_mrn(session: AsyncSession, mrn: str) -> list[uuid.UUID]:
    """The intake service's patient ids that this service's referrals know by this MRN (the
    access audit's search by MRN, from the referrals' patient snapshots)."""
    found = await session.execute(
        select(Referral.patient["patient_id"].astext)
        .where(Referral.patient["mrn"].astext == mrn, Referral.patient["patient_id"].astext.is_not(None))
        .distinct()
    )
    return sorted(uuid.UUID(value) for value in found.scalars())


def patient_snapshot(event: IntakeSubmitted) -> dict[str, Any]:
    p = event.intake.patient
    return {
        "given_name": p.given_name,
        "family_name": p.family_name,
        "birth_date": p.birth_date.isoformat(),
        "mrn": p.mrn,
        "patient_id": str(event.patient_id),  # the intake service's patient (FHIR references it)
    }


def clinical_picture(event: IntakeSubmitted) -> dict[str, Any]:
    """What the referral keeps of the intake version for its destination and clinicians: the
    contact details for booking and every clinical answer (names, birth date and MRN are in the
    patient snapshot). Never logged."""
    body = event.intake
    picture = ClinicalPicture(
        contact=Contact(sex=body.patient.sex, phone=body.patient.phone, email=body.patient.email),
        complaint=body.complaint,
        red_flags=body.red_flags,
        symptoms=body.symptoms,
        conditions=body.conditions,
        risk_factors=body.risk_factors,
        treatments_tried=body.treatments_tried,
        regenerative_procedure=body.regenerative_procedure,
        notes=body.notes,
    )
    result: dict[str, Any] = msgspec.to_builtins(picture)
    return result


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
    latest = await latest_triaged_version(session, event.intake_id)
    if latest is not None and event.intake_version <= latest:
        log.info(
            "intake_version_already_triaged",
            intake_id=str(event.intake_id),
            intake_version=event.intake_version,
            latest_version=latest,
        )
        return None
    outcome = triage(event.intake, triage_date(event, settings), thresholds_from(settings))
    if amended:
        open_now = await open_referrals_for(session, event.intake_id)
        if open_now:
            return await amend(session, event, outcome, open_now, now=now, settings=settings)
    return await create_referral(
        session,
        intake_id=event.intake_id,
        intake_version=event.intake_version,
        patient=patient_snapshot(event),
        clinical=clinical_picture(event),
        destination=outcome.destination.value,
        priority=outcome.priority.value,
        reasons=_reasons(outcome),
        ruleset_version=outcome.ruleset_version,
        now=now,
        settings=settings,
        by=TRIAGE_ACTOR,
        note=f"triaged intake version {event.intake_version}",
    )


# -- the amendment policy --------------------------------------------------------------------

AMEND_HOLD = "AMEND-HOLD"
AMEND_HOLD_TEXT = (
    "Your updated form would change your referral; it stays in place until a clinician has "
    "reviewed the change."
)
#: Reasons a person gave (a clinician's resolve, a specialist's redirect): an amendment keeps them.
PERSON_REASONS = frozenset({"CLINICIAN", "REDIRECT"})


def resolved_by(referral: Referral) -> str | None:
    """Who set this referral's destination and priority by hand (a clinician's resolve, or a
    specialist's redirect after a decline), if anyone did: the one an amendment must not
    overrule by itself."""
    if not _person_reasons(referral):
        return None
    decisions = [h.by for h in referral.history if h.status == "requested" and _by_a_person(h)]
    return decisions[-1] if decisions else None


def _by_a_person(entry: ReferralHistory) -> bool:
    """A person's entry: it carries their key's (or account's) id; older rows, kept before the
    id was, go by the name triage writes."""
    return entry.by_id is not None or entry.by != TRIAGE_ACTOR


def _person_reasons(referral: Referral) -> list[dict[str, str]]:
    return [r for r in referral.reasons if r["code"] in PERSON_REASONS]


async def amend(
    session: AsyncSession,
    event: IntakeSubmitted,
    outcome: TriageOutcome,
    open_now: list[Referral],
    *,
    now: dt.datetime,
    settings: Settings,
) -> Referral:
    """The amendment policy of ruleset v2, against the open referral:

    - same destination and priority: its reasons are brought up to date in place (a person's
      reasons kept);
    - more urgent, and the open referral was not set by a clinician's resolve: superseded at once;
    - more urgent and urgent care, after a resolve: superseded at once, the new referral carrying
      the resolve's reason and the event naming the clinician;
    - anything else (less urgent, as urgent elsewhere, a more urgent hold after a resolve):
      AMEND-HOLD. The open referral stays as it is; a clinician-review hold beside it (or the open
      hold itself, if it is one) gets AMEND-HOLD and the new reasons, at the more urgent of the two
      priorities. The clinician resolves the hold to replace the open referral, or cancels it to
      keep it.

    So an amendment never lowers urgency by itself, and never overwrites a clinician's resolve
    without a clinician. Each case emits `referral.amended`.
    """
    held = [r for r in open_now if r.amendment_of is not None]
    current = next((r for r in open_now if r.amendment_of is None), held[0] if held else open_now[0])
    pending = next((r for r in held if r is not current), None)
    reasons = _reasons(outcome)
    proposed = (outcome.destination.value, outcome.priority.value)
    resolver = resolved_by(current)
    more_urgent = urgency(*proposed) < urgency(current.destination, current.priority)

    if proposed == (current.destination, current.priority):
        _retriage_in_place(current, event, outcome, [*reasons, *_person_reasons(current)], now=now)
        current.history.append(
            ReferralHistory(
                status=current.status,
                at=now,
                by=TRIAGE_ACTOR,
                note=f"intake amended (version {event.intake_version}); same outcome, reasons updated",
            )
        )
        await session.flush()
        await _close_pending(
            session, pending, now=now, note="the amended form no longer changes the referral"
        )
        await _announce(session, "updated", current, event, outcome, now=now)
        return current

    if more_urgent and (resolver is None or outcome.destination.value == "urgent_care"):
        kept = _person_reasons(current) if resolver else []
        successor = await create_referral(
            session,
            intake_id=event.intake_id,
            intake_version=event.intake_version,
            patient=patient_snapshot(event),
            clinical=clinical_picture(event),
            destination=outcome.destination.value,
            priority=outcome.priority.value,
            reasons=[*reasons, *kept],
            ruleset_version=outcome.ruleset_version,
            now=now,
            settings=settings,
            by=TRIAGE_ACTOR,
            note=f"triaged intake version {event.intake_version}"
            + (f"; supersedes the resolve by {resolver}" if resolver else ""),
            supersedes=current,
        )
        await record_status(
            session,
            current,
            "cancelled",
            by=TRIAGE_ACTOR,
            now=now,
            note=f"superseded by referral {successor.id} after intake amendment",
        )
        current.close_reason = "superseded by amendment"
        await _close_pending(session, pending, now=now, note=f"superseded by referral {successor.id}")
        await _announce(
            session,
            "superseded",
            current,
            event,
            outcome,
            now=now,
            superseded_by=successor.id,
            resolver=resolver,
        )
        return successor

    hold_reasons = [
        {"code": AMEND_HOLD, "text": AMEND_HOLD_TEXT, "source": "Clinic amendment policy"},
        *reasons,
        *_person_reasons(current),
    ]
    priority = min(current.priority, outcome.priority.value, key=PRIORITY_RANK.__getitem__)
    note = (
        f"intake amended (version {event.intake_version}) to {proposed[0]} ({proposed[1]}): "
        "held for a clinician"
    )
    if current.status == "needs_review":
        hold = current
    elif pending is not None:
        hold = pending
    else:
        hold = await create_referral(
            session,
            intake_id=event.intake_id,
            intake_version=event.intake_version,
            patient=patient_snapshot(event),
            clinical=clinical_picture(event),
            destination="clinician_review",
            priority=priority,
            reasons=hold_reasons,
            ruleset_version=outcome.ruleset_version,
            now=now,
            settings=settings,
            by=TRIAGE_ACTOR,
            note=f"{note}; referral {current.id} stays in place",
            amendment_of=current,
        )
        await _announce(session, "held", current, event, outcome, now=now, hold_id=hold.id, resolver=resolver)
        return hold
    _retriage_in_place(hold, event, outcome, hold_reasons, now=now)
    if PRIORITY_RANK[priority] < hold.priority_rank:
        hold.priority, hold.priority_rank = priority, PRIORITY_RANK[priority]
        hold.due_by = min(hold.due_by, now + service_level(priority, settings))
    hold.history.append(ReferralHistory(status=hold.status, at=now, by=TRIAGE_ACTOR, note=note))
    await session.flush()
    await _announce(session, "held", current, event, outcome, now=now, hold_id=hold.id, resolver=resolver)
    return hold


def _retriage_in_place(
    referral: Referral,
    event: IntakeSubmitted,
    outcome: TriageOutcome,
    reasons: list[dict[str, str]],
    *,
    now: dt.datetime,
) -> None:
    referral.reasons = reasons
    referral.intake_version = event.intake_version
    referral.patient = patient_snapshot(event)
    referral.clinical = clinical_picture(event)
    referral.ruleset_version = outcome.ruleset_version
    referral.updated_at = now


async def _close_pending(
    session: AsyncSession, hold: Referral | None, *, now: dt.datetime, note: str
) -> None:
    """An AMEND-HOLD review a newer amendment made moot is cancelled, saying why."""
    if hold is None:
        return
    hold.close_reason = note
    await record_status(session, hold, "cancelled", by=TRIAGE_ACTOR, now=now, note=note)


async def _announce(
    session: AsyncSession,
    action: str,
    referral: Referral,
    event: IntakeSubmitted,
    outcome: TriageOutcome,
    *,
    now: dt.datetime,
    hold_id: uuid.UUID | None = None,
    superseded_by: uuid.UUID | None = None,
    resolver: str | None = None,
) -> None:
    await publish(
        session,
        ReferralAmended(
            referral_id=referral.id,
            intake_id=referral.intake_id,
            intake_version=event.intake_version,
            action=action,
            destination=referral.destination,
            priority=referral.priority,
            proposed_destination=outcome.destination.value,
            proposed_priority=outcome.priority.value,
            reason_codes=[r.code for r in outcome.reasons],
            amended_at=now,
            hold_id=hold_id,
            superseded_by=superseded_by,
            resolved_by=resolver,
            after_resolve=resolver is not None,
        ),
        subject=referral.id,
    )
    log.info(
        "referral_amended",
        referral_id=str(referral.id),
        action=action,
        proposed_destination=outcome.destination.value,
        proposed_priority=outcome.priority.value,
    )


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
    patient: str | None = None,
) -> Select[Referral]:
    """The worklist order (most urgent, then soonest due) after the cursor's row; `patient` keeps
    the referrals whose patient's family name starts with it or whose MRN is it (the pages' search)."""
    query = scoped(select(Referral), principal)
    if patient:
        query = query.where(
            or_(
                Referral.patient["family_name"].astext.istartswith(patient, autoescape=True),
                Referral.patient["mrn"].astext == patient,
            )
        )
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
        done_by_id=f.done_by_id,
    )


def patient_out(snapshot: dict[str, Any]) -> PatientSnapshot:
    return PatientSnapshot(
        given_name=snapshot["given_name"],
        family_name=snapshot["family_name"],
        birth_date=dt.date.fromisoformat(snapshot["birth_date"]),
        mrn=snapshot.get("mrn"),
    )


def sees_clinical(principal: Principal) -> bool:
    """Who sees a referral's clinical picture (a specialist only on its own destination's
    referrals, which are the only ones it can load): not the front desk."""
    return principal.role in (Role.specialist, Role.clinician, Role.admin)


def clinical_out(referral: Referral) -> ClinicalPicture | None:
    return msgspec.convert(referral.clinical, ClinicalPicture) if referral.clinical else None


def to_out(referral: Referral, now: dt.datetime, *, clinical: bool = False) -> ReferralOut:
    """The referral as the API shows it; with `clinical`, its clinical picture too."""
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
        history=[
            HistoryEntry(status=h.status, at=h.at, by=h.by, by_id=h.by_id, note=h.note)
            for h in referral.history
        ],
        supersedes=referral.supersedes,
        superseded_by=referral.superseded_by,
        amendment_of=referral.amendment_of,
        follow_ups=[follow_up_out(f) for f in referral.follow_ups],
        allowed_actions=allowed_actions(referral.status),
        clinical=clinical_out(referral) if clinical else None,
    )
