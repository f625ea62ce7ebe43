"""Admin endpoints for dead deliveries, on the service that owns the consumers:
`GET /v1/events/dead` and `POST /v1/events/dead/{id}/replay`.

Each service sees only its own consumers' dead deliveries (the names in its `ServiceSpec`): an
operator replays an intake consumer's delivery on the intake service, never on the referral one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromQuery, PathParameter
from litestar.status_codes import HTTP_200_OK
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.auth import Role, require_roles
from services.common.http.pagination import DEFAULT_LIMIT, Limit, decode_cursor, encode_cursor
from services.common.http.problems import AUTH_RESPONSES, problem_spec
from services.common.queue import DeadDelivery, dead_deliveries, replay_dead

#: A delivery id as PostgreSQL's bigint holds it (a larger one is a 422, not a 500).
DeliveryId = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]


class DeadDeliveryPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[DeadDelivery]
    next_cursor: str | None


class Replayed(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    status: str = "pending"


def dead_letter_controller(consumers: Iterable[str]) -> type[Controller]:
    """The dead-letter controller of a service owning `consumers`."""
    owned = sorted(set(consumers))

    class DeadLetterController(Controller):
        path = "/v1/events/dead"
        tags = ["events"]
        guards = [require_roles(Role.admin)]

        @get(
            "/",
            operation_id="listDeadDeliveries",
            summary="Dead deliveries, newest first",
            responses={
                422: problem_spec("`limit` or `cursor` is not valid; `errors` names it."),
                **AUTH_RESPONSES,
            },
        )
        async def list_dead(
            self,
            db_session: NamedDependency[AsyncSession],
            consumer: FromQuery[str | None] = None,
            limit: Limit = DEFAULT_LIMIT,
            cursor: FromQuery[str | None] = None,
        ) -> DeadDeliveryPage:
            """Deliveries this service's consumers gave up on, newest first, with the last error.
            Filter by `consumer`; page with `limit` and the previous page's `next_cursor`."""
            names = [name for name in owned if consumer is None or name == consumer]
            conn = await db_session.connection()
            rows = await dead_deliveries(conn, names, limit=limit + 1, before_id=decode_cursor(cursor, int))
            more = len(rows) > limit
            items = rows[:limit]
            return DeadDeliveryPage(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)

        @post(
            "/{delivery_id:int}/replay",
            operation_id="replayDeadDelivery",
            summary="Replay a dead delivery",
            status_code=HTTP_200_OK,
            responses={
                404: problem_spec("No dead delivery of this service's consumers has this id."),
                **AUTH_RESPONSES,
            },
        )
        async def replay(
            self, db_session: NamedDependency[AsyncSession], delivery_id: DeliveryId
        ) -> Replayed:
            """Re-queue a dead delivery with a fresh set of attempts (fix the cause first). An
            event its consumer had already applied is not applied again."""
            conn = await db_session.connection()
            if not await replay_dead(conn, delivery_id, owned):
                raise NotFoundException(f"No dead delivery {delivery_id} of this service's consumers.")
            await db_session.commit()
            return Replayed(id=delivery_id)

    return DeadLetterController
