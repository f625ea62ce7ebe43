"""The operator's dead-letter page, on each service for its own consumers (as
`GET /v1/events/dead` and `POST /v1/events/dead/{id}/replay`): the deliveries given up on, with
their last error, and a button to replay each."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar import MediaType, Request, Router, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts import labels
from services.common.contracts.vocabulary import ConsumerName, EventType
from services.common.http.pages.web import Staff, page_router, redirect, render, require_staff_role
from services.common.queue import dead_deliveries, replay_dead

PAGE_SIZE = 200
DbSession = NamedDependency[AsyncSession]


def dead_letter_pages(consumers: Iterable[str]) -> Router:
    owned = sorted(set(consumers))

    @get("/admin/dead")
    async def dead_page(request: Request[Any, Any, State], staff: Staff, db_session: DbSession) -> Template:
        require_staff_role(staff)  # admin only
        conn = await db_session.connection()
        items = await dead_deliveries(conn, owned, limit=PAGE_SIZE, before_id=None)
        return render(
            request,
            "dead_letters.html",
            items=items,
            consumers=owned,
            notice=request.query_params.get("notice"),
            title="Dead letters",
            event_labels=labels.word_labels(EventType),
            consumer_labels=labels.word_labels(ConsumerName),
        )

    @post("/admin/dead/{delivery_id:int}/replay", status_code=200, media_type=MediaType.HTML)
    async def replay_page(
        request: Request[Any, Any, State], staff: Staff, db_session: DbSession, delivery_id: FromPath[int]
    ) -> Any:
        require_staff_role(staff)
        conn = await db_session.connection()
        replayed = await replay_dead(conn, delivery_id, owned) if 0 < delivery_id < 2**63 else False
        await db_session.commit()
        notice = f"Delivery {delivery_id} queued again." if replayed else f"No dead delivery {delivery_id}."
        return redirect(f"/admin/dead?notice={notice}")

    return page_router("/", [dead_page, replay_page])
