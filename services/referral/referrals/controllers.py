"""HTTP for referrals: worklists, one referral, and the status actions."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.auth import Principal, Role, require_roles
from services.common.clock import Clock
from services.common.pagination import DEFAULT_LIMIT, check_limit, decode_cursor, encode_cursor
from services.common.problems import FieldProblem, UnprocessableProblem
from services.common.settings import Settings
from services.common.web import DbSession
from services.referral.db.models import Referral
from services.referral.referrals.actions import (
    CancelBody,
    DeclineBody,
    NoteBody,
    ResolveBody,
    ScheduleBody,
    may_act,
    take_action,
)
from services.referral.referrals.schemas import ReferralOut, ReferralPage
from services.referral.referrals.services import cursor_key, scoped, to_out, worklist_query

READERS = require_roles(Role.front_desk, Role.specialist, Role.clinician)
ACTORS = require_roles(Role.specialist, Role.clinician)
DESTINATIONS = ("urgent_care", "pain_management", "regenerative_medicine", "clinician_review")
STATUSES = (
    "needs_review",
    "requested",
    "accepted",
    "declined",
    "scheduled",
    "completed",
    "no_show",
    "cancelled",
)


def _principal(request: Request[Any, Any, Any]) -> Principal:
    user = request.user
    assert isinstance(user, Principal)
    return user


def _clock(state: State) -> Clock:
    clock: Clock = state["clinic_clock"]
    return clock


async def load_visible(session: AsyncSession, principal: Principal, referral_id: uuid.UUID) -> Referral:
    """The referral if the caller may see it; a 404 otherwise (never another destination's record)."""
    referral = (
        await session.execute(scoped(select(Referral).where(Referral.id == referral_id), principal))
    ).scalar_one_or_none()
    if referral is None:
        raise NotFoundException(f"No referral {referral_id} that you can see.")
    return referral


def _one_of(field: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise UnprocessableProblem(
            [FieldProblem(field=field, message=f"must be one of {', '.join(allowed)}", allowed=list(allowed))]
        )


class ReferralController(Controller):
    path = "/v1/referrals"
    tags = ["referrals"]

    @get("/", guards=[READERS])
    async def list_referrals(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        destination: FromQuery[str | None] = None,
        status: Annotated[list[str] | None, QueryParameter(description="one or more statuses")] = None,
        priority: FromQuery[str | None] = None,
        intake_id: FromQuery[uuid.UUID | None] = None,
        overdue: FromQuery[bool | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> ReferralPage:
        """A worklist: most urgent first (priority, then due_by). Specialists see their own
        destination only."""
        principal = _principal(request)
        _one_of("destination", destination, DESTINATIONS)
        for s in status or []:
            _one_of("status", s, STATUSES)
        _one_of("priority", priority, ("stat", "urgent", "routine"))
        if principal.role is Role.specialist and destination not in (None, principal.destination):
            raise UnprocessableProblem(
                [FieldProblem(field="destination", message="a specialist sees only its own destination")]
            )
        limit = check_limit(limit)
        now = _clock(state).now()
        rows = list(
            (
                await db_session.execute(
                    worklist_query(
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
                )
            ).scalars()
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return ReferralPage(
            items=[to_out(r, now) for r in rows],
            next_cursor=encode_cursor(cursor_key(rows[-1])) if more and rows else None,
        )

    @get("/{referral_id:uuid}", guards=[READERS])
    async def get_referral(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
    ) -> ReferralOut:
        referral = await load_visible(db_session, _principal(request), referral_id)
        return to_out(referral, _clock(state).now())

    async def _act(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
        action: str,
        body: Any = None,
    ) -> ReferralOut:
        principal = _principal(request)
        referral = await load_visible(db_session, principal, referral_id)
        if not may_act(principal, referral, action):
            from litestar.exceptions import PermissionDeniedException

            raise PermissionDeniedException(f"Your role may not '{action}' this referral.")
        settings: Settings = state["clinic_settings"]
        now = _clock(state).now()
        # Lock the row: two specialists pressing buttons at once must not both win.
        await db_session.refresh(referral, with_for_update=True)
        shown = await take_action(
            db_session, referral, action, principal, now=now, settings=settings, body=body
        )
        await db_session.commit()
        return to_out(shown, now)

    @post("/{referral_id:uuid}/accept", guards=[ACTORS], status_code=200)
    async def accept(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[NoteBody | None] = None,
    ) -> ReferralOut:
        return await self._act(request, state, db_session, referral_id, "accept", data or NoteBody())

    @post("/{referral_id:uuid}/decline", guards=[ACTORS], status_code=200)
    async def decline(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[DeclineBody],
    ) -> ReferralOut:
        return await self._act(request, state, db_session, referral_id, "decline", data)

    @post("/{referral_id:uuid}/schedule", guards=[ACTORS], status_code=200)
    async def schedule(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[ScheduleBody],
    ) -> ReferralOut:
        return await self._act(request, state, db_session, referral_id, "schedule", data)

    @post("/{referral_id:uuid}/complete", guards=[ACTORS], status_code=200)
    async def complete(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[NoteBody | None] = None,
    ) -> ReferralOut:
        return await self._act(request, state, db_session, referral_id, "complete", data or NoteBody())

    @post("/{referral_id:uuid}/no-show", guards=[ACTORS], status_code=200)
    async def no_show(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[NoteBody | None] = None,
    ) -> ReferralOut:
        return await self._act(request, state, db_session, referral_id, "no-show", data or NoteBody())

    @post("/{referral_id:uuid}/cancel", guards=[ACTORS], status_code=200)
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[CancelBody],
    ) -> ReferralOut:
        return await self._act(request, state, db_session, referral_id, "cancel", data)

    @post("/{referral_id:uuid}/resolve", guards=[require_roles(Role.clinician)], status_code=200)
    async def resolve(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[ResolveBody],
    ) -> ReferralOut:
        return await self._act(request, state, db_session, referral_id, "resolve", data)
