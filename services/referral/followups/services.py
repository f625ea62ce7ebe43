"""Follow-ups after a regenerative procedure: the worklist, marking one done, and emitting those
whose day has come.

A follow-up is `scheduled` when its referral is completed (see `referrals.actions`), becomes
`due` on its day (the scheduler marks it and emits `referral.follow_up_due` in one transaction),
and `done` when someone marks it so (possibly before its day: it is then never emitted).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from typing import Annotated, Any

import msgspec
import structlog
from litestar.params import FromQuery, QueryParameter
from sqlalchemy import Select, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.auth import Principal
from services.common.contracts.events import ReferralFollowUpDue
from services.common.errors import IllegalTransition
from services.common.http.pagination import bad_cursor
from services.common.queue import publish
from services.referral.db.models import FollowUp, Referral
from services.referral.followups.schemas import FollowUpItem
from services.referral.referrals.queries import scoped
from services.referral.referrals.shaping import follow_up_out, patient_out
from services.referral.referrals.web import DestinationFilter

log = structlog.get_logger(__name__)


class FollowUpStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    DUE = "due"
    DONE = "done"
    CANCELLED = "cancelled"


STATUSES = tuple(s.value for s in FollowUpStatus)
#: A follow-up that can still be marked done.
OPEN_STATUSES = frozenset({"scheduled", "due"})


@dataclasses.dataclass(frozen=True, kw_only=True)
class FollowUpFilters:
    """What the follow-ups worklist is narrowed to; each filter is off when None. Its fields are
    the query parameters of `GET /v1/follow-ups` (the handler is given it built from the query
    string)."""

    due_before: Annotated[
        dt.date | None, QueryParameter(description="only those due strictly before this date")
    ] = None
    status: Annotated[list[FollowUpStatus] | None, QueryParameter(description="one or more statuses")] = None
    destination: DestinationFilter = None
    referral_id: FromQuery[uuid.UUID | None] = None


def follow_up_query(
    principal: Principal, filters: FollowUpFilters, *, after: list[Any] | None, limit: int
) -> Select[FollowUp, Referral]:
    """The worklist: soonest first, scoped as referrals are (a specialist: its destination)."""
    query = scoped(select(FollowUp, Referral).join(Referral, Referral.id == FollowUp.referral_id), principal)
    if filters.status:
        query = query.where(FollowUp.status.in_(filters.status))
    if filters.due_before is not None:
        query = query.where(FollowUp.due_on < filters.due_before)
    if filters.destination:
        query = query.where(Referral.destination == filters.destination)
    if filters.referral_id is not None:
        query = query.where(FollowUp.referral_id == filters.referral_id)
    if after is not None:
        due_on, fid = follow_up_cursor(after)
        query = query.where(or_(FollowUp.due_on > due_on, and_(FollowUp.due_on == due_on, FollowUp.id > fid)))
    return query.order_by(FollowUp.due_on, FollowUp.id).limit(limit + 1)


def follow_up_cursor(key: list[Any]) -> tuple[dt.date, uuid.UUID]:
    try:
        due_on, fid = key
        return dt.date.fromisoformat(due_on), uuid.UUID(fid)
    except (TypeError, ValueError) as exc:
        raise bad_cursor() from exc


def cursor_key(row: tuple[FollowUp, Referral]) -> list[Any]:
    follow_up = row[0]
    return [follow_up.due_on.isoformat(), str(follow_up.id)]


def follow_up_item(follow_up: FollowUp, referral: Referral) -> FollowUpItem:
    """The follow-up as its referral shows it, with the referral's intake, destination and patient."""
    return FollowUpItem(
        **msgspec.structs.asdict(follow_up_out(follow_up)),
        intake_id=referral.intake_id,
        destination=referral.destination,
        patient=patient_out(referral.patient),
    )


async def load_follow_up(
    session: AsyncSession, principal: Principal, follow_up_id: uuid.UUID, *, lock: bool = False
) -> tuple[FollowUp, Referral] | None:
    """The follow-up and its referral if the caller may see them (else None)."""
    query = scoped(
        select(FollowUp, Referral)
        .join(Referral, Referral.id == FollowUp.referral_id)
        .where(FollowUp.id == follow_up_id),
        principal,
    )
    if lock:
        query = query.with_for_update(of=FollowUp).execution_options(populate_existing=True)
    row = (await session.execute(query)).first()
    return (row[0], row[1]) if row is not None else None


def mark_done(follow_up: FollowUp, principal: Principal, now: dt.datetime) -> None:
    """Done, by whom and when; a follow-up already done (or cancelled) is a 409."""
    if follow_up.status not in OPEN_STATUSES:
        raise IllegalTransition(
            f"A follow-up that is {follow_up.status} cannot be marked done.",
            current_status=follow_up.status,
            allowed_actions=[],
        )
    follow_up.status = "done"
    follow_up.done_at = now
    follow_up.done_by = principal.name
    follow_up.done_by_id = principal.key_id


async def emit_due(session: AsyncSession, *, today: dt.date, now: dt.datetime, limit: int) -> int:
    """Mark up to `limit` scheduled follow-ups whose day has come as `due` and emit
    `referral.follow_up_due` for each, in the caller's transaction; return how many.

    Rows are claimed with SKIP LOCKED, so schedulers running side by side take different ones;
    the event key (`follow_up_due:<id>`) makes a second emission of one follow-up impossible even
    if its row were put back to `scheduled`.
    """
    claim = (
        select(FollowUp.id)
        .where(FollowUp.status == "scheduled", FollowUp.due_on <= today)
        .order_by(FollowUp.due_on, FollowUp.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("claim")
    )
    rows = (
        await session.execute(
            update(FollowUp)
            .where(FollowUp.id == claim.c.id, Referral.id == FollowUp.referral_id)
            .values(status="due", emitted_at=now)
            # Each row is the event's payload, its columns named as the event's fields.
            .returning(
                FollowUp.referral_id,
                Referral.intake_id,
                FollowUp.id.label("follow_up_id"),
                Referral.destination,
                FollowUp.due_on,
            )
            .execution_options(synchronize_session=False)
        )
    ).all()
    for row in rows:
        due = ReferralFollowUpDue(**row._mapping)
        await publish(session, due, subject=due.referral_id, key=f"follow_up_due:{due.follow_up_id}")
    if rows:
        log.info("follow_ups_due", count=len(rows), today=today.isoformat())
    return len(rows)
