"""The referral status machine's actions, as specialists and clinicians take them."""

from __future__ import annotations

import datetime as dt
import enum

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.auth import Principal, Role
from services.common.problems import ConflictProblem
from services.common.settings import Settings
from services.referral.db.models import FollowUp, Referral
from services.referral.referrals.services import (
    ACTIONS,
    PRIORITY_RANK,
    allowed_actions,
    create_referral,
    record_status,
    service_level,
)


class Destination(enum.StrEnum):
    urgent_care = "urgent_care"
    pain_management = "pain_management"
    regenerative_medicine = "regenerative_medicine"


class Priority(enum.StrEnum):
    stat = "stat"
    urgent = "urgent"
    routine = "routine"


class DeclineBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    reason: str
    redirect_to: Destination | None = None


class ScheduleBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    appointment_at: dt.datetime


class CancelBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    reason: str


class ResolveBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    destination: Destination
    priority: Priority
    note: str | None = None


class NoteBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    note: str | None = None


def ensure_allowed(referral: Referral, action: str) -> str:
    sources, target = ACTIONS[action]
    if referral.status not in sources:
        allowed = allowed_actions(referral.status)
        raise ConflictProblem(
            f"A referral that is {referral.status} cannot be moved by '{action}'. "
            f"Allowed: {', '.join(allowed) or 'none (the referral is closed)'}.",
            status=referral.status,
            allowed_actions=allowed,
        )
    return target


async def take_action(
    session: AsyncSession,
    referral: Referral,
    action: str,
    principal: Principal,
    *,
    now: dt.datetime,
    settings: Settings,
    body: msgspec.Struct | None = None,
) -> Referral:
    """Apply `action` to `referral`; the caller commits. Returns the referral the caller should
    show (the new one, for a decline with a redirect, is linked from the old)."""
    target = ensure_allowed(referral, action)
    note: str | None = None
    if isinstance(body, NoteBody):
        note = body.note
    if action == "accept":
        referral.accepted_at = now
    elif action == "schedule":
        assert isinstance(body, ScheduleBody)
        referral.appointment_at = body.appointment_at
        referral.scheduled_at = now
        note = f"appointment at {body.appointment_at.isoformat()}"
    elif action in ("decline", "cancel"):
        assert isinstance(body, DeclineBody | CancelBody)
        referral.close_reason = body.reason
        note = body.reason
    elif action == "resolve":
        assert isinstance(body, ResolveBody)
        referral.destination = body.destination.value
        referral.priority = body.priority.value
        referral.priority_rank = PRIORITY_RANK[body.priority.value]
        referral.due_by = now + service_level(body.priority.value, settings)
        referral.reasons = [
            *referral.reasons,
            {
                "code": "CLINICIAN",
                "text": f"Clinician review by {principal.name}: "
                f"{body.destination.value}, {body.priority.value}." + (f" {body.note}" if body.note else ""),
                "source": "clinician review",
            },
        ]
        note = body.note or f"resolved to {body.destination.value} ({body.priority.value})"
    await record_status(session, referral, target, by=principal.name, now=now, note=note)
    if action == "complete" and referral.destination == "regenerative_medicine":
        for offset in settings.follow_up_offsets_days:
            session.add(
                FollowUp(
                    referral_id=referral.id,
                    due_on=(now + dt.timedelta(days=offset)).date(),
                    status="scheduled",
                )
            )
        await session.flush()
        await session.refresh(referral, ["follow_ups"])
    if action == "decline" and isinstance(body, DeclineBody) and body.redirect_to is not None:
        return await create_referral(
            session,
            intake_id=referral.intake_id,
            intake_version=referral.intake_version,
            patient=referral.patient,
            destination=body.redirect_to.value,
            priority=referral.priority,
            reasons=[
                {
                    "code": "REDIRECT",
                    "text": f"Redirected by {principal.name} from {referral.destination}: {body.reason}",
                    "source": "specialist decline",
                },
                *referral.reasons,
            ],
            ruleset_version=referral.ruleset_version,
            now=now,
            settings=settings,
            by=principal.name,
            note=f"redirected from referral {referral.id}: {body.reason}",
            supersedes=referral,
        )
    return referral


def may_act(principal: Principal, referral: Referral, action: str) -> bool:
    """Specialists act on their own destination; `resolve` is a clinician's; admin does all."""
    if principal.role is Role.admin:
        return True
    if action == "resolve":
        return principal.role is Role.clinician
    if principal.role is Role.clinician:
        return True
    return principal.role is Role.specialist and principal.destination == referral.destination
