"""The closed loop: the referral service's events keep each intake's `status` and `referral`
summary current.

Events may come late, out of order or twice. Each referral gets one row in `referral_mirror`,
and an event changes that row's status only if it is newer than what the row holds (by the time
the referral service gives it: `created_at`, `changed_at`). The intake's summary is then derived
from its referrals: the one not superseded (by `supersedes` on a newer referral or
`superseded_by` on the old one), the newest (by creation, or first news of it) if several. The
intake row is locked first, so two workers applying events of one intake never derive the
summary from each other's half-work.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts.events import Envelope, ReferralCreated, ReferralStatusChanged
from services.common.contracts.vocabulary import ConsumerName
from services.common.queue import Consumer
from services.intake.db.models import Intake, ReferralMirror
from services.intake.intakes.schemas import IntakeStatus

CONSUMER_NAME = ConsumerName.INTAKE_REFERRAL_MIRROR
log = structlog.get_logger(__name__)


def _mirror_row(payload: ReferralCreated | ReferralStatusChanged) -> dict[str, object]:
    row: dict[str, object] = {
        "referral_id": payload.referral_id,
        "intake_id": payload.intake_id,
        "destination": payload.destination,
        "priority": payload.priority,
        "status": payload.status,
    }
    if isinstance(payload, ReferralCreated):
        return row | {
            "status_at": payload.created_at,
            "created_at": payload.created_at,
            "intake_version": payload.intake_version,
            "supersedes": payload.supersedes,
            "due_by": payload.due_by,
            "reasons": payload.reasons or None,
        }
    return row | {
        "status_at": payload.changed_at,
        "superseded_by": payload.superseded_by,
        "due_by": payload.due_by,
    }


async def _record(session: AsyncSession, row: dict[str, object]) -> None:
    """Upsert one referral's row: newer status wins; facts learnt once (creation, version,
    supersession) are kept once known."""
    stmt = pg_insert(ReferralMirror).values(**row)
    new, old = stmt.excluded, ReferralMirror.__table__.c
    newer = new.status_at > old.status_at
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[old.referral_id],
            set_={
                "destination": case((newer, new.destination), else_=old.destination),
                "priority": case((newer, new.priority), else_=old.priority),
                "status": case((newer, new.status), else_=old.status),
                "status_at": func.greatest(old.status_at, new.status_at),
                "created_at": func.coalesce(old.created_at, new.created_at),
                "intake_version": func.coalesce(old.intake_version, new.intake_version),
                "supersedes": func.coalesce(old.supersedes, new.supersedes),
                "superseded_by": func.coalesce(new.superseded_by, old.superseded_by),
                "due_by": case(
                    (newer & new.due_by.is_not(None), new.due_by), else_=func.coalesce(old.due_by, new.due_by)
                ),
                "reasons": func.coalesce(old.reasons, new.reasons),
            },
        )
    )


#: An intake's referrals (a handful at most): one index lookup, whatever the planner knows of
#: the table. Which one is current is decided here, not in SQL, so no plan can turn it into a
#: scan of every referral (a hashed subplan does, on a table without statistics).
INTAKE_REFERRALS = (
    select(ReferralMirror)
    .where(ReferralMirror.intake_id == bindparam("intake_id"))
    .execution_options(populate_existing=True)  # upserted in Core just before, maybe in this session
)


def _current(referrals: Sequence[ReferralMirror]) -> ReferralMirror:
    """The referral not superseded (by `superseded_by`, or by another's `supersedes`), a kept
    referral before a cancelled review, the newest if several."""
    replaced = {r.supersedes for r in referrals if r.supersedes is not None}

    def rank(r: ReferralMirror) -> tuple[bool, bool, float]:
        superseded = r.superseded_by is not None or r.referral_id in replaced
        return superseded, r.status == "cancelled", -(r.created_at or r.status_at).timestamp()

    return min(referrals, key=rank)


async def _refresh_summary(session: AsyncSession, intake_id: object) -> None:
    referrals = (await session.execute(INTAKE_REFERRALS, {"intake_id": intake_id})).scalars().all()
    current = _current(referrals)
    await session.execute(
        update(Intake)
        .where(Intake.id == intake_id)
        .values(
            status=IntakeStatus.ROUTED.value,
            referral_id=current.referral_id,
            referral_destination=current.destination,
            referral_priority=current.priority,
            referral_status=current.status,
            referral_intake_version=current.intake_version,
        )
    )


async def apply_referral_event(session: AsyncSession, envelope: Envelope) -> None:
    """The consumer's handler: runs in the queue worker's transaction, which commits it together
    with the inbox row."""
    payload = envelope.payload()
    if not isinstance(payload, ReferralCreated | ReferralStatusChanged):
        return
    intake = (
        await session.execute(select(Intake.id).where(Intake.id == payload.intake_id).with_for_update())
    ).scalar_one_or_none()
    await _record(session, _mirror_row(payload))
    if intake is None:
        # Not ours (or not yet visible): the referral row is kept, and the summary is derived
        # when the next event of this intake arrives.
        log.warning("referral_event_for_unknown_intake", event_id=str(envelope.id))
        return
    await _refresh_summary(session, payload.intake_id)


referral_mirror = Consumer(CONSUMER_NAME, apply_referral_event)
