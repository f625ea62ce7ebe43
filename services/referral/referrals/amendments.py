"""The amendment policy: what an amended intake does to its open referral."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts.events import IntakeSubmitted, ReferralAmended
from services.common.contracts.vocabulary import PRIORITY_RANK
from services.common.settings import Settings
from services.referral.db.models import Referral, ReferralHistory
from services.referral.referrals.lifecycle import (
    TRIAGE_ACTOR,
    ReferralDraft,
    create_referral,
    publish_about,
    record_status,
    service_level,
)
from services.referral.referrals.snapshots import triaged
from services.referral.triage import TriageOutcome, urgency

log = structlog.get_logger(__name__)

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
    draft = triaged(event, outcome)
    reasons = draft.reasons
    proposed = (outcome.destination.value, outcome.priority.value)
    resolver = resolved_by(current)
    more_urgent = urgency(*proposed) < urgency(current.destination, current.priority)

    if proposed == (current.destination, current.priority):
        _retriage_in_place(current, draft, [*reasons, *_person_reasons(current)], now=now)
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
            dataclasses.replace(draft, reasons=[*reasons, *kept]),
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
            dataclasses.replace(
                draft, destination="clinician_review", priority=priority, reasons=hold_reasons
            ),
            now=now,
            settings=settings,
            by=TRIAGE_ACTOR,
            note=f"{note}; referral {current.id} stays in place",
            amendment_of=current,
        )
        await _announce(session, "held", current, event, outcome, now=now, hold_id=hold.id, resolver=resolver)
        return hold
    _retriage_in_place(hold, draft, hold_reasons, now=now)
    if PRIORITY_RANK[priority] < hold.priority_rank:
        hold.priority, hold.priority_rank = priority, PRIORITY_RANK[priority]
        hold.due_by = min(hold.due_by, now + service_level(priority, settings))
    hold.history.append(ReferralHistory(status=hold.status, at=now, by=TRIAGE_ACTOR, note=note))
    await session.flush()
    await _announce(session, "held", current, event, outcome, now=now, hold_id=hold.id, resolver=resolver)
    return hold


def _retriage_in_place(
    referral: Referral, draft: ReferralDraft, reasons: list[dict[str, str]], *, now: dt.datetime
) -> None:
    """The open referral takes the amended version's facts and `reasons`; where it goes stays."""
    referral.reasons = reasons
    referral.intake_version = draft.intake_version
    referral.patient = draft.patient
    referral.clinical = draft.clinical
    referral.ruleset_version = draft.ruleset_version
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
    await publish_about(
        session,
        referral,
        ReferralAmended,
        intake_version=event.intake_version,
        action=action,
        proposed_destination=outcome.destination.value,
        proposed_priority=outcome.priority.value,
        reason_codes=[r.code for r in outcome.reasons],
        amended_at=now,
        hold_id=hold_id,
        superseded_by=superseded_by,
        resolved_by=resolver,
        after_resolve=resolver is not None,
    )
    log.info(
        "referral_amended",
        referral_id=str(referral.id),
        action=action,
        proposed_destination=outcome.destination.value,
        proposed_priority=outcome.priority.value,
    )
