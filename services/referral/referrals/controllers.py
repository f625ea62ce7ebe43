"""HTTP for referrals: worklists, one referral, and the status actions (the rules live in
`lifecycle.py`, `actions.py` and `amendments.py`, the lists in `queries.py`, the answers' shapes
in `shaping.py`; `deps.Referrals` is what a handler asks for)."""

from __future__ import annotations

import uuid

from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody
from litestar.types import Guard

from services.common.contracts.vocabulary import Action
from services.common.http.pagination import PagingDep
from services.referral.referrals import deps
from services.referral.referrals.actions import CancelBody, DeclineBody, NoteBody, ResolveBody, ScheduleBody
from services.referral.referrals.deps import ReferralFiltersDep, ReferralsDep
from services.referral.referrals.deps import load_visible as load_visible  # its old home, for other routes
from services.referral.referrals.schemas import ReferralOut, ReferralPage
from services.referral.referrals.web import (
    ACTORS,
    CLINICIANS,
    NOT_FOUND,
    READ_RESPONSES,
    READERS,
    WRITE_RESPONSES,
    list_route,
)

ACTION_RESPONSES = WRITE_RESPONSES


def action_route(action: Action, operation_id: str, summary: str, guard: Guard = ACTORS) -> post:
    """The route of one status action: `POST /v1/referrals/{id}/<action>`, answering the referral.
    Each action keeps its own route (and operation id) for its body type; `Referrals.act` takes
    them all."""
    return post(
        f"/{{referral_id:uuid}}/{action.value}",
        operation_id=operation_id,
        summary=summary,
        guards=[guard],
        status_code=200,
        responses=ACTION_RESPONSES,
    )


class ReferralController(Controller):
    path = "/v1/referrals"
    tags = ["referrals"]
    dependencies = deps.DEPENDENCIES

    @list_route("listReferrals", "Referrals worklist, most urgent first")
    async def list_referrals(
        self, referrals: ReferralsDep, filters: ReferralFiltersDep, page: PagingDep
    ) -> ReferralPage:
        """A worklist: most urgent first (priority, then due_by). Specialists see their own
        destination only."""
        return await referrals.worklist(filters, page)

    @get(
        "/{referral_id:uuid}",
        operation_id="getReferral",
        summary="A referral with its history",
        guards=[READERS],
        responses={**READ_RESPONSES, **NOT_FOUND},
    )
    async def get_referral(self, referrals: ReferralsDep, referral_id: FromPath[uuid.UUID]) -> ReferralOut:
        """One referral with its reasons, history, links and follow-ups."""
        return await referrals.one(referral_id)

    @action_route(Action.ACCEPT, "acceptReferral", "Accept a referral")
    async def accept(
        self,
        referrals: ReferralsDep,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[NoteBody | None] = None,
    ) -> ReferralOut:
        """`requested` → `accepted` (the specialist takes the patient on)."""
        return await referrals.act(referral_id, Action.ACCEPT, data or NoteBody())

    @action_route(Action.DECLINE, "declineReferral", "Decline a referral")
    async def decline(
        self, referrals: ReferralsDep, referral_id: FromPath[uuid.UUID], data: JSONBody[DeclineBody]
    ) -> ReferralOut:
        """`requested` → `declined`, with the reason; with `redirect_to`, a new referral to that
        destination takes over, linked both ways (`superseded_by` here, `supersedes` there)."""
        return await referrals.act(referral_id, Action.DECLINE, data)

    @action_route(Action.SCHEDULE, "scheduleReferral", "Schedule a referral's appointment")
    async def schedule(
        self, referrals: ReferralsDep, referral_id: FromPath[uuid.UUID], data: JSONBody[ScheduleBody]
    ) -> ReferralOut:
        """`accepted` → `scheduled`, with the appointment time."""
        return await referrals.act(referral_id, Action.SCHEDULE, data)

    @action_route(Action.COMPLETE, "completeReferral", "Complete a referral")
    async def complete(
        self,
        referrals: ReferralsDep,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[NoteBody | None] = None,
    ) -> ReferralOut:
        """`scheduled` → `completed`; a regenerative-medicine referral gets its follow-ups."""
        return await referrals.act(referral_id, Action.COMPLETE, data or NoteBody())

    @action_route(Action.NO_SHOW, "markReferralNoShow", "Record a missed appointment")
    async def no_show(
        self,
        referrals: ReferralsDep,
        referral_id: FromPath[uuid.UUID],
        data: JSONBody[NoteBody | None] = None,
    ) -> ReferralOut:
        """`scheduled` → `no_show`."""
        return await referrals.act(referral_id, Action.NO_SHOW, data or NoteBody())

    @action_route(Action.CANCEL, "cancelReferral", "Cancel a referral")
    async def cancel(
        self, referrals: ReferralsDep, referral_id: FromPath[uuid.UUID], data: JSONBody[CancelBody]
    ) -> ReferralOut:
        """Any open status → `cancelled`, with the reason."""
        return await referrals.act(referral_id, Action.CANCEL, data)

    @action_route(Action.RESOLVE, "resolveReferral", "Resolve a clinician review", CLINICIANS)
    async def resolve(
        self, referrals: ReferralsDep, referral_id: FromPath[uuid.UUID], data: JSONBody[ResolveBody]
    ) -> ReferralOut:
        """Clinician: `needs_review` → `requested` at the destination and priority decided."""
        return await referrals.act(referral_id, Action.RESOLVE, data)
