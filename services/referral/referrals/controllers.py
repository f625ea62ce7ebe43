"""HTTP for referrals: worklists, one referral, and the status actions (the rules live in
`services.py` and `actions.py`)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.auth import Principal
from services.common.pagination import DEFAULT_LIMIT, check_limit, decode_cursor
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
    PRIORITIES,
    STATUSES,
    cursor_key,
    scoped,
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
    check_destination_filter,
    now_of,
    one_of,
    page_of,
    principal_of,
)

ACTION_RESPONSES = WRITE_RESPONSES


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


class ReferralController(Controller):
    path = "/v1/referrals"
    tags = ["referrals"]

    @get("/", guards=[READERS], responses=READ_RESPONSES)
    async def list_referrals(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        destination: FromQuery[str | None] = None,
        status: Annotated[list[str] | None, QueryParameter(description="one or more statuses")] = None,
        priority: FromQuery[str | None] = None,
        intake_id: FromQuery[uuid.UUID | None] = None,
        overdue: Annotated[
            bool | None, QueryParameter(description="true: due_by passed and still open; false: the others")
        ] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> ReferralPage:
        """A worklist: most urgent first (priority, then due_by). Specialists see their own
        destination only."""
        principal = principal_of(request)
        for one in status or []:
            one_of("status", one, STATUSES)
        one_of("priority", priority, PRIORITIES)
        check_destination_filter(principal, destination, "referrals")
        limit = check_limit(limit)
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

    @get("/{referral_id:uuid}", guards=[READERS], responses={**READ_RESPONSES, **NOT_FOUND})
    async def get_referral(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
    ) -> ReferralOut:
        """One referral with its reasons, history, links and follow-ups."""
        referral = await load_visible(db_session, principal_of(request), referral_id)
        return to_out(referral, now_of(state))

    async def _act(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: AsyncSession,
        referral_id: uuid.UUID,
        action: str,
        body: ActionBody,
    ) -> ReferralOut:
        principal = principal_of(request)
        referral = await load_visible(db_session, principal, referral_id, lock=True)
        if not may_act(principal, referral, action):
            raise PermissionDeniedException(f"Your role may not '{action}' this referral.")
        settings: Settings = state["clinic_settings"]
        now = now_of(state)
        acted = await take_action(
            db_session, referral, action, principal, now=now, settings=settings, body=body
        )
        await db_session.commit()
        return to_out(acted, now)

    @post("/{referral_id:uuid}/accept", guards=[ACTORS], status_code=200, responses=ACTION_RESPONSES)
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

    @post("/{referral_id:uuid}/decline", guards=[ACTORS], status_code=200, responses=ACTION_RESPONSES)
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

    @post("/{referral_id:uuid}/schedule", guards=[ACTORS], status_code=200, responses=ACTION_RESPONSES)
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

    @post("/{referral_id:uuid}/complete", guards=[ACTORS], status_code=200, responses=ACTION_RESPONSES)
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

    @post("/{referral_id:uuid}/no-show", guards=[ACTORS], status_code=200, responses=ACTION_RESPONSES)
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

    @post("/{referral_id:uuid}/cancel", guards=[ACTORS], status_code=200, responses=ACTION_RESPONSES)
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

    @post("/{referral_id:uuid}/resolve", guards=[CLINICIANS], status_code=200, responses=ACTION_RESPONSES)
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
