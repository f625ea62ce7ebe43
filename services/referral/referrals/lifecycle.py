"""A referral's lifecycle in the database: created (its service level and first status) and
moved from status to status (each move in its history and announced)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts.events import ReferralAmended, ReferralCreated, ReferralStatusChanged
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
    await publish_about(
        session,
        referral,
        ReferralStatusChanged,
        status=status,
        previous_status=previous,
        changed_at=now,
        changed_by=by,
        changed_by_id=by_id,
        due_by=referral.due_by,
        superseded_by=referral.superseded_by,
    )


async def publish_about(
    session: AsyncSession,
    referral: Referral,
    event: type[ReferralStatusChanged | ReferralAmended],
    **fields: Any,
) -> None:
    """Publish an event about a referral: which referral (and intake) it is and where it stands
    (destination, priority), then the event's own fields; the referral is the event's subject."""
    about: dict[str, Any] = {
        "referral_id": referral.id,
        "intake_id": referral.intake_id,
        "destination": referral.destination,
        "priority": referral.priority,
    }
    await publish(session, event(**about, **fields), subject=referral.id)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReferralDraft:
    """What a new referral is made of: the intake version it routes, what it keeps of the patient
    and the clinical picture, and where, how urgently and why the patient goes."""

    intake_id: uuid.UUID
    intake_version: int
    patient: dict[str, Any]
    clinical: dict[str, Any] | None
    destination: str
    priority: str
    reasons: list[dict[str, str]]
    ruleset_version: str

    def row(
        self,
        *,
        now: dt.datetime,
        settings: Settings,
        supersedes: uuid.UUID | None = None,
        amendment_of: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        """The new referral's columns: a fresh id, its first status and its service level."""
        return {
            "id": uuid.uuid4(),
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
            "priority_rank": PRIORITY_RANK[self.priority],
            "status": initial_status(self.destination).value,
            "created_at": now,
            "updated_at": now,
            "due_by": now + service_level(self.priority, settings),
            "supersedes": supersedes,
            "amendment_of": amendment_of,
        }

    @classmethod
    def of(cls, referral: Referral) -> ReferralDraft:
        """A draft carrying over an existing referral's intake version, patient and routing."""
        return cls(**{f.name: getattr(referral, f.name) for f in dataclasses.fields(cls)})


def created_event(row: Mapping[str, Any]) -> ReferralCreated:
    """`referral.created` for a new referral's columns (`ReferralDraft.row`)."""
    reasons = row["reasons"]
    return ReferralCreated(
        referral_id=row["id"],
        intake_id=row["intake_id"],
        intake_version=row["intake_version"],
        destination=row["destination"],
        priority=row["priority"],
        status=row["status"],
        due_by=row["due_by"],
        created_at=row["created_at"],
        reason_codes=[r["code"] for r in reasons],
        supersedes=row["supersedes"],
        reasons=[{"code": r["code"], "text": r["text"]} for r in reasons],
    )


def log_created(row: Mapping[str, Any]) -> None:
    reasons = row["reasons"]
    log.info(
        "referral_created",
        referral_id=str(row["id"]),
        intake_id=str(row["intake_id"]),
        destination=row["destination"],
        priority=row["priority"],
        deciding_reason=reasons[0]["code"] if reasons else None,
    )


async def create_referral(
    session: AsyncSession,
    draft: ReferralDraft,
    *,
    now: dt.datetime,
    settings: Settings,
    by: str,
    by_id: uuid.UUID | None = None,
    note: str | None = None,
    supersedes: Referral | None = None,
    amendment_of: Referral | None = None,
) -> Referral:
    """Store the draft as a new referral (superseding `supersedes`, or holding an amendment of
    `amendment_of`), with its first history entry, and announce it."""
    row = draft.row(
        now=now,
        settings=settings,
        supersedes=supersedes.id if supersedes else None,
        amendment_of=amendment_of.id if amendment_of else None,
    )
    first = ReferralHistory(status=row["status"], at=now, by=by, by_id=by_id, note=note)
    referral = Referral(**row, history=[first], follow_ups=[])
    session.add(referral)
    await session.flush()  # the new row must exist before the old one points at it
    if supersedes is not None:
        supersedes.superseded_by = referral.id
        await session.flush()
    await publish(session, created_event(row), subject=referral.id)
    log_created(row)
    return referral
