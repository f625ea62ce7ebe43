"""The follow-up rules as one caller sees them in one request, provided to handlers by name
(`follow_ups: FollowUpsDep`)."""

from __future__ import annotations

import datetime as dt
import uuid

from litestar.di import NamedDependency, Provide
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.auth import Principal
from services.common.errors import NotFound
from services.common.http.deps import Caller, Now
from services.common.http.pagination import PAGING, Paging, decode_cursor, page_of
from services.common.http.web import DbSession
from services.referral.followups.schemas import FollowUpItem, FollowUpPage
from services.referral.followups.services import (
    FollowUpFilters,
    cursor_key,
    follow_up_item,
    follow_up_query,
    load_follow_up,
    mark_done,
)
from services.referral.referrals.web import check_destination_filter


class FollowUps:
    def __init__(self, session: AsyncSession, caller: Principal, now: dt.datetime) -> None:
        self.session = session
        self.caller = caller
        self.now = now

    async def worklist(self, filters: FollowUpFilters, page: Paging) -> FollowUpPage:
        """Soonest first, scoped as referrals are (a specialist: its destination's only)."""
        check_destination_filter(self.caller, filters.destination, "follow-ups")
        query = follow_up_query(self.caller, filters, after=decode_cursor(page.cursor), limit=page.limit)
        found = [(f, r) for f, r in (await self.session.execute(query)).all()]
        rows, next_cursor = page_of(found, page.limit, cursor_key)
        return FollowUpPage(items=[follow_up_item(f, r) for f, r in rows], next_cursor=next_cursor)

    async def done(self, follow_up_id: uuid.UUID) -> FollowUpItem:
        """Mark the follow-up done (locked, so two presses are served one after the other) and
        commit; not found if the caller may not see it, a conflict if it is no longer open."""
        found = await load_follow_up(self.session, self.caller, follow_up_id, lock=True)
        if found is None:
            raise NotFound(f"No follow-up {follow_up_id} that you can see.")
        follow_up, referral = found
        mark_done(follow_up, self.caller, self.now)
        await self.session.commit()
        return follow_up_item(follow_up, referral)


def provide_follow_ups(db_session: DbSession, caller: Caller, now: Now) -> FollowUps:
    return FollowUps(db_session, caller, now)


#: How a handler asks for them: `follow_ups: FollowUpsDep`, and the worklist's filters, built
#: from the query string, `filters: FollowUpFiltersDep` and `page: PagingDep`.
FollowUpsDep = NamedDependency[FollowUps]
FollowUpFiltersDep = NamedDependency[FollowUpFilters]
DEPENDENCIES = {
    "follow_ups": Provide(provide_follow_ups, sync_to_thread=False),
    "filters": Provide(FollowUpFilters, sync_to_thread=False),
    **PAGING,
}
