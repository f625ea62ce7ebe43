"""Reading referrals with a caller's scope applied: the worklist query and its cursor, and the
patients known by an MRN."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Annotated, Any, TypeVar

from litestar.params import FromQuery, QueryParameter
from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.auth import Principal, Role
from services.common.contracts.vocabulary import OPEN_STATUSES, Priority, ReferralStatus
from services.common.http.pagination import bad_cursor
from services.referral.db.models import Referral
from services.referral.referrals.web import DestinationFilter

_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


def scoped(query: _Query, principal: Principal) -> _Query:
    """A specialist sees its own destination's referrals only (any query over `Referral`, such
    as follow-ups joined to their referral)."""
    if principal.role is Role.specialist:
        own = principal.destination.value if principal.destination else None
        return query.where(Referral.destination == own)
    return query


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReferralFilters:
    """What a worklist is narrowed to; each filter is off when None. Its fields are the query
    parameters of `GET /v1/referrals` (the handler is given it built from the query string)."""

    destination: DestinationFilter = None
    status: Annotated[list[ReferralStatus] | None, QueryParameter(description="one or more statuses")] = None
    priority: FromQuery[Priority | None] = None
    intake_id: FromQuery[uuid.UUID | None] = None
    overdue: Annotated[
        bool | None, QueryParameter(description="true: due_by passed and still open; false: the others")
    ] = None


def worklist_query(
    principal: Principal,
    filters: ReferralFilters,
    *,
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
    if filters.destination:
        query = query.where(Referral.destination == filters.destination)
    if filters.status:
        query = query.where(Referral.status.in_(filters.status))
    if filters.priority:
        query = query.where(Referral.priority == filters.priority)
    if filters.intake_id:
        query = query.where(Referral.intake_id == filters.intake_id)
    if filters.overdue is True:
        query = query.where(Referral.due_by < now, Referral.status.in_(OPEN_STATUSES))
    elif filters.overdue is False:
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


async def patient_ids_by_mrn(session: AsyncSession, mrn: str) -> list[uuid.UUID]:
    """The intake service's patient ids that this service's referrals know by this MRN (the
    access audit's search by MRN, from the referrals' patient snapshots)."""
    found = await session.execute(
        select(Referral.patient["patient_id"].astext)
        .where(Referral.patient["mrn"].astext == mrn, Referral.patient["patient_id"].astext.is_not(None))
        .distinct()
    )
    return sorted(uuid.UUID(value) for value in found.scalars())
