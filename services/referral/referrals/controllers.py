"""HTTP for referrals: worklists, one referral, and the status actions (the rules live in
`services.py` and `actions.py`)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.types import Guard
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.auth import Principal
from services.common.pagination import DEFAULT_LIMIT, Limit, decode_cursor, page_of
from services.common.settings import Settings
from services.common.web import DbSession
from services.referral.db.models import Referral
from services.referral.referrals.actions import (
    ActionBody,
    CancelBody,
    DeclineBody,
    NoteBody,
    ResolveBody,
    ScheduleBody,
    may_act,
    take_action,
)
from services.referral.referrals.schemas import ReferralOut, ReferralPage
from services.referral.referrals.services import (
    ReferralStatus,
    cursor_key,
    scoped,
    sees_clinical,
    to_out,
    worklist_query,
)
from services.referral.referrals.web import (
    ACTORS,
    CLINICIANS,
    NOT_FOUND,
    READ_RESPONSES,
    READERS,
    WRITE_RESPONSES,
    DestinationFilter,
    check_destination_filter,
    now_of,
    principal_of,
)
from services.referral.triage import Priority

ACTION_RESPONSES = WRITE_RESPONSES


def action_route(action: str, operation_id: str, summary: str, guard: Guard = ACTORS) -> post:
    """The route of one status action: `POST /v1/referrals/{id}/<action>`, answering the referral."""
    return post(
        f"/{{referral_id:uuid}}/{action}",
        operation_id=operation_id,
        summary=summary,
        guards=[guard],
        status_code=200,
        responses=ACTION_RESPONSES,
    )


async def load_visible(
    session: AsyncSession, principal: Principal, referral_id: uuid.UUID, *, lock: bool = False
) -> Referral:
    """The referral if the caller may see it; a 404 otherwise (never another destination's record).

    With `lock`, the row is locked for the rest of the transaction: two people pressing buttons
    on one referral at once are served one after the other, the second against the first's result.
    """
    query = scoped(select(Referral).where(Referral.id == referral_id), principal)
    if lock:
        query = query.with_for_update(of=Referral).execution_options(populate_existing=True)
    referral = (await session.execute(query)).scalar_one_or_none()
    if referral is None:
        raise NotFoundException(f"No referral {referral_id} that you can see.")
    return referral


async def act_on(
    session: AsyncSession,
    principal: Principal,
    referral_id: uuid.UUID,
    action: str,
    body: ActionBody,
    state: State,
) -> Referral:
    """One status action as the API and the pages take it: the referral loaded in the caller's
    scope and locked (404), the caller's right to the move (403), the move (409/422), committed."""
    referral = await load_visible(session, principal, referral_id, lock=True)
    if not may_act(principal, referral, action):
        raise PermissionDeniedException(f"Your role may not '{action}' this referral.")
    settings: Settings = state["clinic_settings"]
    acted = await take_action(
        session, referral, action, principal, now=now_of(state), settings=settings, body=body
    )
    await session.commit()
    return acted


class ReferralController(Controller):
    path = "/v1/referrals"
    tags = ["referrals"]

    @get(
        "/",
        operation_id="listReferrals",
        summary="Referrals worklist, most urgent first",
        guards=[READERS],
        responses=READ_RESPONSES,
    )
    async def list_referrals(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        destination: DestinationFilter = None,
        status: Annotated[
            list[ReferralStatus] | None, QueryParameter(description="one or more statuses")
        ] = None,
        priority: FromQuery[Priority | None] = None,
        intake_id: FromQuery[uuid.UUID | None] = None,
        overdue: Annotated[
            bool | None, QueryParameter(description="true: due_by passed and still open; false: the others")
        ] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> ReferralPage:
        """A worklist: most urgent first (priority, then due_by). Specialists see their own
        destination only."""
        principal = principal_of(request)
        check_destination_filter(principal, destination, "referrals")
        now = now_of(state)
        query = worklist_query(
            principal,
            destination=destination,
            status=status,
            priority=priority,
            intake_id=intake_id,
            overdue=overdue,
            now=now,
            after=decode_cursor(cursor),
            limit=limit,
        )
        rows, next_cursor = page_of((await db_session.execute(query)).scalars().all(), limit, cursor_key)
        return ReferralPage(items=[to_out(r, now) for r in rows], next_cursor=next_cursor)

    @get(
        "/{referral_id:uuid}",
        operation_id="getReferral",
        summary="A referral with its history",
        guards=[READERS],
        responses={**READ_RESPONSES, **NOT_FOUND},
    )
    async def get_referral(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
    ) -> ReferralOut:
        """One referral with its reasons, history, links and follow-ups; for its specialist,
        clinicians and admins also its clinical picture (`clinical`)."""
        principal = principal_of(request)
        referral = await load_visible(db_session, principal, referral_id)
        return to_out(referral, now_of(state), clinical=sees_clinical(principal))

    async def _act(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: AsyncSession,
        referral_id: uuid.UUID,
        action: str,
        body: ActionBody,
    ) -> ReferralOut:
        acted = await act_on(db_session, principal_of(request), referral_id, action, body, state)
        return to_out(acted, now_of(state))

    @action_route("accept", "acceptReferral", "Accept a referral")
    async def accept(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[NoteBody | None] = None,
    ) -> ReferralOut:
        """`requested` → `accepted` (the specialist takes the patient on)."""
        return await self._act(request, state, db_session, referral_id, "accept", data or NoteBody())

    @action_route("decline", "declineReferral", "Decline a referral")
    async def decline(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[DeclineBody],
    ) -> ReferralOut:
        """`requested` → `declined`, with the reason; with `redirect_to`, a new referral to that
        destination takes over, linked both ways (`superseded_by` here, `supersedes` there)."""
        return await self._act(request, state, db_session, referral_id, "decline", data)

    @action_route("schedule", "scheduleReferral", "Schedule a referral's appointment")
    async def schedule(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[ScheduleBody],
    ) -> ReferralOut:
        """`accepted` → `scheduled`, with the appointment time."""
        return await self._act(request, state, db_session, referral_id, "schedule", data)

    @action_route("complete", "completeReferral", "Complete a referral")
    async def complete(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[NoteBody | None] = None,
    ) -> ReferralOut:
        """`scheduled` → `completed`; a regenerative-medicine referral gets its follow-ups."""
        return await self._act(request, state, db_session, referral_id, "complete", data or NoteBody())

    @action_route("no-show", "markReferralNoShow", "Record a missed appointment")
    async def no_show(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[NoteBody | None] = None,
    ) -> ReferralOut:
        """`scheduled` → `no_show`."""
        return await self._act(request, state, db_session, referral_id, "no-show", data or NoteBody())

    @action_route("cancel", "cancelReferral", "Cancel a referral")
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[CancelBody],
    ) -> ReferralOut:
        """Any open status → `cancelled`, with the reason."""
        return await self._act(request, state, db_session, referral_id, "cancel", data)

    @action_route("resolve", "resolveReferral", "Resolve a clinician review", CLINICIANS)
    async def resolve(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[ResolveBody],
    ) -> ReferralOut:
        """Clinician: `needs_review` → `requested` at the destination and priority decided."""
        return await self._act(request, state, db_session, referral_id, "resolve", data)
