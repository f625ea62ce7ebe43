"""The referral rules as one caller sees them in one request, provided to handlers by name
(`referrals: Referrals`): the handlers say which route and body, this says what happens."""

from __future__ import annotations

import datetime as dt
import uuid

from litestar.di import NamedDependency, Provide
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.auth import Principal
from services.common.contracts.vocabulary import Action
from services.common.errors import NotAllowed, NotFound
from services.common.http.deps import Caller, ClinicSettings, Now
from services.common.http.pagination import PAGING, Paging, decode_cursor, page_of
from services.common.http.web import DbSession
from services.common.settings import Settings
from services.referral.db.models import Referral
from services.referral.referrals.actions import ActionBody, may_act, take_action
from services.referral.referrals.queries import ReferralFilters, cursor_key, scoped, worklist_query
from services.referral.referrals.schemas import ReferralOut, ReferralPage
from services.referral.referrals.shaping import sees_clinical, shaped_for, to_out
from services.referral.referrals.web import check_destination_filter


async def load_visible(
    session: AsyncSession, principal: Principal, referral_id: uuid.UUID, *, lock: bool = False
) -> Referral:
    """The referral if the caller may see it; not found otherwise (never another destination's
    record).

    With `lock`, the row is locked for the rest of the transaction: two people pressing buttons
    on one referral at once are served one after the other, the second against the first's
    result."""
    query = scoped(select(Referral).where(Referral.id == referral_id), principal)
    if lock:
        query = query.with_for_update(of=Referral).execution_options(populate_existing=True)
    referral = (await session.execute(query)).scalar_one_or_none()
    if referral is None:
        raise NotFound(f"No referral {referral_id} that you can see.")
    return referral


class Referrals:
    def __init__(
        self, session: AsyncSession, caller: Principal, settings: Settings, now: dt.datetime
    ) -> None:
        self.session = session
        self.caller = caller
        self.settings = settings
        self.now = now

    async def visible(self, referral_id: uuid.UUID, *, lock: bool = False) -> Referral:
        return await load_visible(self.session, self.caller, referral_id, lock=lock)

    async def worklist(self, filters: ReferralFilters, page: Paging) -> ReferralPage:
        """A worklist: most urgent first. Specialists see their own destination only."""
        check_destination_filter(self.caller, filters.destination, "referrals")
        after = decode_cursor(page.cursor)
        query = worklist_query(self.caller, filters, now=self.now, after=after, limit=page.limit)
        rows, next_cursor = page_of(
            (await self.session.execute(query)).scalars().all(), page.limit, cursor_key
        )
        items = [shaped_for(self.caller, to_out(r, self.now)) for r in rows]
        return ReferralPage(items=items, next_cursor=next_cursor)

    async def one(self, referral_id: uuid.UUID) -> ReferralOut:
        """The referral as the caller may see it; for its specialist, clinicians and admins with
        its clinical picture."""
        referral = await self.visible(referral_id)
        return shaped_for(self.caller, to_out(referral, self.now, clinical=sees_clinical(self.caller)))

    async def move(self, referral_id: uuid.UUID, action: Action, body: ActionBody) -> Referral:
        """The one way every status action is taken (the API's and the pages'): lock the
        referral, check the caller may take this move on it, apply the move, commit."""
        referral = await self.visible(referral_id, lock=True)
        if not may_act(self.caller, referral, action):
            raise NotAllowed(f"Your role may not '{action}' this referral.")
        acted = await take_action(
            self.session, referral, action, self.caller, now=self.now, settings=self.settings, body=body
        )
        await self.session.commit()
        return acted

    async def act(self, referral_id: uuid.UUID, action: Action, body: ActionBody) -> ReferralOut:
        """`move`, answering the referral as it now is."""
        return to_out(await self.move(referral_id, action, body), self.now)


def provide_referrals(db_session: DbSession, caller: Caller, settings: ClinicSettings, now: Now) -> Referrals:
    return Referrals(db_session, caller, settings, now)


#: How a handler asks for them: `referrals: ReferralsDep`, and a worklist's filters, built from
#: the query string, `filters: ReferralFiltersDep` and `page: PagingDep`.
ReferralsDep = NamedDependency[Referrals]
ReferralFiltersDep = NamedDependency[ReferralFilters]
DEPENDENCIES = {
    "referrals": Provide(provide_referrals, sync_to_thread=False),
    "filters": Provide(ReferralFilters, sync_to_thread=False),
    **PAGING,
}
