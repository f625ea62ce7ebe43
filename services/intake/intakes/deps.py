"""The intake rules as one caller sees them in one request, provided to handlers by name
(`intakes: IntakesDep`): the handlers say which route and body, this says what happens."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, TypeAlias

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.auth import Principal
from services.common.contracts.intake_body import IntakeBody
from services.common.contracts.intake_form import latest_today, parse_intake
from services.common.errors import NotFound
from services.common.http.deps import provide_caller, provide_clock, provide_now, provide_settings
from services.common.http.pagination import decode_cursor, encode_cursor
from services.common.http.web import DbSession
from services.common.settings import Settings
from services.intake.intakes import authors, idempotency, reads, submissions
from services.intake.intakes.schemas import Intake, IntakePage

#: A submission that passed every check: the form, its author and its idempotency claim.
Accepted: TypeAlias = tuple[IntakeBody, authors.Author, idempotency.IdempotencyClaim | None]


@dataclass(frozen=True, slots=True)
class Intakes:
    session: AsyncSession
    caller: Principal
    settings: Settings
    now: dt.datetime
    #: The request's method and path, which an idempotency key is bound to.
    target: tuple[str, str]

    def accept(self, raw: bytes, key: str | None) -> Accepted:
        """The strictly decoded form, who sends it and when, and its idempotency claim (if keyed);
        a body or key that is not valid raises the error the caller is answered with."""
        intake = parse_intake(raw, latest_today(self.now, self.settings.clinic_time_zone))
        author = authors.Author(name=self.caller.name, at=self.now, id=self.caller.key_id)
        key = idempotency.check_idempotency_key(key)
        if key is None:
            return intake, author, None
        claim = idempotency.IdempotencyClaim(
            scope=f"key:{self.caller.key_id}",
            key=key,
            request_hash=idempotency.request_hash(*self.target, intake),
            ttl=dt.timedelta(hours=self.settings.idempotency_hours),
        )
        return intake, author, claim

    async def submit(self, raw: bytes, key: str | None) -> idempotency.StoredResponse:
        return await self.submit_accepted(self.accept(raw, key))

    async def submit_accepted(self, accepted: Accepted) -> idempotency.StoredResponse:
        intake, author, claim = accepted
        return await submissions.submit_intake(self.session, intake, author, claim)

    async def amend(self, intake_id: uuid.UUID, raw: bytes, key: str | None) -> idempotency.StoredResponse:
        intake, author, claim = self.accept(raw, key)
        return await submissions.amend_intake(self.session, intake_id, intake, author, claim)

    async def one(self, intake_id: uuid.UUID, version: int | None = None) -> Intake:
        """The intake as of `version` (default: the current one); not found if there is none."""
        intake = await reads.get_intake(self.session, intake_id, version)
        if intake is None:
            raise NotFound("No intake with this id." if version is None else "No such intake or version.")
        return intake

    async def versions(self, intake_id: uuid.UUID, limit: int, cursor: str | None) -> IntakePage:
        found = await reads.list_versions(self.session, intake_id, limit, decode_cursor(cursor, int))
        if found is None:
            raise NotFound("No intake with this id.")
        items, last = found
        return IntakePage(items=items, next_cursor=None if last is None else encode_cursor(last))


def intakes_for(session: AsyncSession, caller: Principal, state: State, method: str, path: str) -> Intakes:
    """The intake rules for `caller`'s request to `method path`, now (the fast lane's way in)."""
    now = provide_now(provide_clock(state))
    return Intakes(session, caller, provide_settings(state), now, (method, path))


def provide_intakes(request: Request[Any, Any, Any], db_session: DbSession) -> Intakes:
    # The settings, the moment and the caller come from their providers called here, not as
    # dependencies of their own: Litestar resolves sibling dependencies in a task group (four
    # tasks per request), which cost more than reading them (issue 17's profile).
    caller = provide_caller(request)
    return intakes_for(db_session, caller, request.app.state, request.method, request.url.path)


#: How a handler asks for it: `intakes: IntakesDep`.
IntakesDep = NamedDependency[Intakes]
DEPENDENCIES = {"intakes": Provide(provide_intakes, sync_to_thread=False)}
