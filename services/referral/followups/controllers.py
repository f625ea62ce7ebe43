"""HTTP for follow-ups: the worklist and marking one done (`deps.FollowUps` is what a handler
asks for)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery, QueryParameter

from services.common.http.deps import Caller
from services.common.http.pagination import DEFAULT_LIMIT, Limit
from services.referral.followups import deps
from services.referral.followups.deps import FollowUpsDep
from services.referral.followups.schemas import FollowUpItem, FollowUpPage
from services.referral.followups.services import FollowUpStatus
from services.referral.referrals.web import (
    ACTORS,
    AUTH_RESPONSES,
    NOT_FOUND,
    READ_RESPONSES,
    READERS,
    DestinationFilter,
    check_destination_filter,
    problem_spec,
)


class FollowUpController(Controller):
    path = "/v1/follow-ups"
    tags = ["follow-ups"]
    dependencies = deps.DEPENDENCIES

    @get(
        "/",
        operation_id="listFollowUps",
        summary="Follow-ups worklist, soonest first",
        guards=[READERS],
        responses=READ_RESPONSES,
    )
    async def list_follow_ups(
        self,
        caller: Caller,
        follow_ups: FollowUpsDep,
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
        check_destination_filter(caller, destination, "follow-ups")
        return await follow_ups.worklist(
            status=status,
            due_before=due_before,
            destination=destination,
            referral_id=referral_id,
            limit=limit,
            cursor=cursor,
        )

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
    async def done(self, follow_ups: FollowUpsDep, follow_up_id: FromPath[uuid.UUID]) -> FollowUpItem:
        """Mark a follow-up done (a scheduled one too: it is then never emitted as due)."""
        return await follow_ups.done(follow_up_id)
