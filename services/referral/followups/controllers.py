"""HTTP for follow-ups: the worklist and marking one done (`deps.FollowUps` is what a handler
asks for)."""

from __future__ import annotations

import uuid

from litestar import Controller, post
from litestar.params import FromPath

from services.common.http.pagination import PagingDep
from services.referral.followups import deps
from services.referral.followups.deps import FollowUpFiltersDep, FollowUpsDep
from services.referral.followups.schemas import FollowUpItem, FollowUpPage
from services.referral.referrals.web import (
    ACTORS,
    AUTH_RESPONSES,
    NOT_FOUND,
    list_route,
    problem_spec,
)


class FollowUpController(Controller):
    path = "/v1/follow-ups"
    tags = ["follow-ups"]
    dependencies = deps.DEPENDENCIES

    @list_route("listFollowUps", "Follow-ups worklist, soonest first")
    async def list_follow_ups(
        self, follow_ups: FollowUpsDep, filters: FollowUpFiltersDep, page: PagingDep
    ) -> FollowUpPage:
        """The follow-ups worklist, soonest first (`?status=due` for those whose day has come).
        A specialist sees its own destination's only."""
        return await follow_ups.worklist(filters, page)

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
