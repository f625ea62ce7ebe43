"""HTTP for follow-ups: the worklist and marking one done."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, QueryParameter

from services.common.http.pagination import DEFAULT_LIMIT, Limit, decode_cursor, page_of
from services.common.http.web import DbSession
from services.referral.followups.schemas import FollowUpItem, FollowUpPage
from services.referral.followups.services import (
    FollowUpStatus,
    cursor_key,
    follow_up_item,
    follow_up_query,
    load_follow_up,
    mark_done,
)
from services.referral.referrals.web import (
    ACTORS,
    AUTH_RESPONSES,
    NOT_FOUND,
    READ_RESPONSES,
    READERS,
    DestinationFilter,
    check_destination_filter,
    now_of,
    principal_of,
    problem_spec,
)


class FollowUpController(Controller):
    path = "/v1/follow-ups"
    tags = ["follow-ups"]

    @get(
        "/",
        operation_id="listFollowUps",
        summary="Follow-ups worklist, soonest first",
        guards=[READERS],
        responses=READ_RESPONSES,
    )
    async def list_follow_ups(
        self,
        request: Request[Any, Any, Any],
        db_session: DbSession,
        due_before: Annotated[
            dt.date | None, QueryParameter(description="only those due strictly before this date")
        ] = None,
        status: Annotated[
            list[FollowUpStatus] | None, QueryParameter(description="one or more statuses")
        ] = None,
        destination: DestinationFilter = None,
        referral_id: FromQuery[uuid.UUID | None] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> FollowUpPage:
        """The follow-ups worklist, soonest first (`?status=due` for those whose day has come).
        A specialist sees its own destination's only."""
        principal = principal_of(request)
        check_destination_filter(principal, destination, "follow-ups")
        query = follow_up_query(
            principal,
            status=status,
            due_before=due_before,
            destination=destination,
            referral_id=referral_id,
            after=decode_cursor(cursor),
            limit=limit,
        )
        found = [(f, r) for f, r in (await db_session.execute(query)).all()]
        rows, next_cursor = page_of(found, limit, cursor_key)
        return FollowUpPage(items=[follow_up_item(f, r) for f, r in rows], next_cursor=next_cursor)

    @post(
        "/{follow_up_id:uuid}/done",
        operation_id="completeFollowUp",
        summary="Mark a follow-up done",
        guards=[ACTORS],
        status_code=200,
        responses={
            **AUTH_RESPONSES,
            **NOT_FOUND,
            409: problem_spec("The follow-up is already done or cancelled."),
        },
    )
    async def done(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: DbSession,
        follow_up_id: FromPath[uuid.UUID],
    ) -> FollowUpItem:
        """Mark a follow-up done (a scheduled one too: it is then never emitted as due)."""
        principal = principal_of(request)
        found = await load_follow_up(db_session, principal, follow_up_id, lock=True)
        if found is None:
            raise NotFoundException(f"No follow-up {follow_up_id} that you can see.")
        follow_up, referral = found
        mark_done(follow_up, principal, now_of(state))
        await db_session.commit()
        return follow_up_item(follow_up, referral)
