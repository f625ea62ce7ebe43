"""The referral status machine's actions, as specialists and clinicians take them.

Every move goes through `take_action`: it refuses a move the machine does not allow (409 naming
the moves that are allowed), records the history entry and the `referral.status_changed` event
(through `record_status`), and does what the move implies: follow-ups on completing a
regenerative-medicine referral, a new linked referral on a decline with `redirect_to`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.auth import Destination, Principal, Role
from services.common.clock import clinic_today
from services.common.contracts.vocabulary import (
    ACTIONS,
    OPEN_STATUSES,
    PRIORITY_RANK,
    Action,
    Priority,
    ReferralStatus,
)
from services.common.errors import FieldProblem, IllegalTransition, InvalidFields
from services.common.settings import Settings
from services.referral.db.models import FollowUp, Referral
from services.referral.referrals.lifecycle import (
    ReferralDraft,
    allowed_actions,
    create_referral,
    record_status,
    service_level,
)

#: A reason a person gives (decline, cancel): required, and more than blanks.
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=r"\S")]
Note = Annotated[str, msgspec.Meta(max_length=4000)]


class DeclineBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    reason: Reason
    #: Send the patient on to another destination instead: a new referral, linked both ways.
    redirect_to: Destination | None = None


class ScheduleBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    #: With its UTC offset: an appointment time without one is ambiguous.
    appointment_at: Annotated[dt.datetime, msgspec.Meta(tz=True)]


class CancelBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    reason: Reason


class ResolveBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    destination: Destination
    priority: Priority
    note: Note | None = None


class NoteBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    note: Note | None = None


ActionBody = DeclineBody | ScheduleBody | CancelBody | ResolveBody | NoteBody


def ensure_allowed(referral: Referral, action: Action) -> ReferralStatus:
    """The status `action` leads to; an illegal move naming the allowed ones if it may not be
    taken now."""
    sources, target = ACTIONS[action]
    if referral.status not in sources:
        allowed = allowed_actions(referral.status)
        raise IllegalTransition(
            f"A referral that is {referral.status} cannot be moved by '{action}'. "
            f"Allowed: {', '.join(allowed) or 'none (the referral is closed)'}.",
            current_status=referral.status,
            allowed_actions=allowed,
        )
    return target


def _check_redirect(referral: Referral, body: DeclineBody) -> None:
    if body.redirect_to is not None and body.redirect_to.value == referral.destination:
        raise InvalidFields(
            [
                FieldProblem(
                    field="redirect_to",
                    message=f"the referral is already for {referral.destination}; name another destination",
                    allowed=[d.value for d in Destination if d.value != referral.destination],
                )
            ]
        )


async def _redirect(
    session: AsyncSession,
    referral: Referral,
    body: DeclineBody,
    principal: Principal,
    *,
    now: dt.datetime,
    settings: Settings,
) -> Referral:
    """The referral that takes over from a declined one: same patient and priority, the
    decline's reason first among its reasons, linked both ways."""
    assert body.redirect_to is not None
    redirect = {
        "code": "REDIRECT",
        "text": f"Redirected by {principal.name} from {referral.destination}: {body.reason}",
        "source": "specialist decline",
    }
    draft = ReferralDraft.of(referral)
    return await create_referral(
        session,
        dataclasses.replace(draft, destination=body.redirect_to.value, reasons=[redirect, *draft.reasons]),
        now=now,
        settings=settings,
        by=principal.name,
        by_id=principal.key_id,
        note=f"redirected from referral {referral.id}: {body.reason}",
        supersedes=referral,
    )


def _schedule_follow_ups(
    session: AsyncSession, referral: Referral, now: dt.datetime, settings: Settings
) -> None:
    """After a regenerative procedure: one follow-up per configured offset (days after
    completion, by the clinic's date)."""
    completed_on = clinic_today(now, settings.clinic_time_zone)
    for offset in sorted(set(settings.follow_up_offsets_days)):
        session.add(
            FollowUp(
                referral_id=referral.id,
                due_on=completed_on + dt.timedelta(days=offset),
                status="scheduled",
            )
        )


def _resolve(
    referral: Referral, body: ResolveBody, principal: Principal, now: dt.datetime, settings: Settings
) -> str:
    """A clinician decides where a held referral goes; its service level starts now."""
    referral.destination = body.destination.value
    referral.priority = body.priority.value
    referral.priority_rank = PRIORITY_RANK[body.priority.value]
    referral.due_by = now + service_level(body.priority.value, settings)
    referral.reasons = [
        *referral.reasons,
        {
            "code": "CLINICIAN",
            "text": f"Clinician review by {principal.name}: {body.destination.value}, {body.priority.value}."
            + (f" {body.note}" if body.note else ""),
            "source": "clinician review",
        },
    ]
    return body.note or f"resolved to {body.destination.value} ({body.priority.value})"


async def _replace_held(
    session: AsyncSession, hold: Referral, principal: Principal, *, now: dt.datetime
) -> None:
    """A clinician resolved an AMEND-HOLD review: the referral it held (if still open) is
    cancelled as superseded by the resolved one. (Cancelling the hold instead keeps it.)"""
    held = await session.get(Referral, hold.amendment_of, with_for_update=True)
    if held is None or held.status not in OPEN_STATUSES:
        return
    hold.supersedes = held.id
    held.superseded_by = hold.id
    held.close_reason = "superseded by a clinician's review of an amendment"
    await record_status(
        session,
        held,
        "cancelled",
        by=principal.name,
        by_id=principal.key_id,
        now=now,
        note=f"replaced by referral {hold.id} after a clinician reviewed the amendment",
    )


async def take_action(
    session: AsyncSession,
    referral: Referral,
    action: Action,
    principal: Principal,
    *,
    now: dt.datetime,
    settings: Settings,
    body: ActionBody | None = None,
) -> Referral:
    """Apply `action` to `referral` (locked by the caller); the caller commits. Returns the
    referral acted on: after a redirect it names its successor in `superseded_by` (which the
    caller may not be allowed to see, so it is not returned itself)."""
    target = ensure_allowed(referral, action)
    note = body.note if isinstance(body, NoteBody) else None
    if action is Action.ACCEPT:
        referral.accepted_at = now
    elif action is Action.SCHEDULE:
        assert isinstance(body, ScheduleBody)
        referral.appointment_at = body.appointment_at
        referral.scheduled_at = now
        note = f"appointment at {body.appointment_at.isoformat()}"
    elif action in (Action.DECLINE, Action.CANCEL):
        assert isinstance(body, DeclineBody | CancelBody)
        referral.close_reason = body.reason
        note = body.reason
        if isinstance(body, DeclineBody) and body.redirect_to is not None:
            _check_redirect(referral, body)
            # First, so the decline's event already names the successor.
            successor = await _redirect(session, referral, body, principal, now=now, settings=settings)
            note = f"{body.reason} (redirected to {successor.destination}: referral {successor.id})"
    elif action is Action.RESOLVE:
        assert isinstance(body, ResolveBody)
        note = _resolve(referral, body, principal, now, settings)
    await record_status(
        session, referral, target, by=principal.name, by_id=principal.key_id, now=now, note=note
    )
    if action is Action.RESOLVE and referral.amendment_of is not None:
        await _replace_held(session, referral, principal, now=now)
    if action is Action.COMPLETE and referral.destination == Destination.REGENERATIVE_MEDICINE:
        _schedule_follow_ups(session, referral, now, settings)
        await session.flush()
        await session.refresh(referral, ["follow_ups"])
    return referral


def may_act(principal: Principal, referral: Referral, action: Action) -> bool:
    """Specialists act on their own destination; `resolve` is a clinician's; admin does all."""
    if principal.role is Role.admin:
        return True
    if action is Action.RESOLVE:
        return principal.role is Role.clinician
    if principal.role is Role.clinician:
        return True
    return principal.role is Role.specialist and principal.destination == referral.destination
