"""`GET /v1/audit`: the access audit of one service, for admins (each service shows its own rows;
`clinic audit` shows both)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.auth import Role, require_roles
from services.common.access.models import AuditEvent
from services.common.http.deps import ServiceName
from services.common.http.pagination import DEFAULT_LIMIT, Limit, newest_first, page_of
from services.common.http.problems import AUTH_RESPONSES, problem_spec


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One access: who, what, which patients, and how it ended."""

    id: uuid.UUID
    at: dt.datetime
    service: str
    actor_id: uuid.UUID | None
    actor_name: str
    actor_role: str | None
    actor_kind: str
    action: str
    method: str | None
    path: str | None
    resource_type: str | None
    resource_id: str | None
    patient_ids: list[uuid.UUID]
    request_id: str | None
    outcome: str
    status: int | None
    detail: dict[str, Any] | None


class AuditPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[AuditEntry]
    next_cursor: str | None


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def audit_query(
    *,
    service: str | None = None,
    patient_id: uuid.UUID | None = None,
    actor: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Select[Any]:
    """The audit's rows matching the filters (`actor` is a key's name or id)."""
    query = select(AuditEvent)
    if service is not None:
        query = query.where(AuditEvent.service == service)
    if patient_id is not None:
        query = query.where(AuditEvent.patient_ids.contains([patient_id]))
    if actor is not None:
        try:
            query = query.where(or_(AuditEvent.actor_name == actor, AuditEvent.actor_id == uuid.UUID(actor)))
        except ValueError:
            query = query.where(AuditEvent.actor_name == actor)
    if (since := _utc(since)) is not None:
        query = query.where(AuditEvent.at >= since)
    if (until := _utc(until)) is not None:
        query = query.where(AuditEvent.at < until)
    return query


def entry_of(row: AuditEvent) -> AuditEntry:
    return AuditEntry(**{f: getattr(row, f) for f in AuditEntry.__struct_fields__})


async def audit_page(session: AsyncSession, query: Select[Any], limit: int, cursor: str | None) -> AuditPage:
    ordered = newest_first(query, AuditEvent.at, AuditEvent.id, cursor).limit(limit + 1)
    rows = (await session.execute(ordered)).scalars().all()
    page, next_cursor = page_of(rows, limit, lambda r: (r.at, r.id))
    return AuditPage(items=[entry_of(r) for r in page], next_cursor=next_cursor)


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["audit"]
    guards = [require_roles(Role.admin)]

    @get(
        "/",
        operation_id="listAuditEvents",
        summary="The access audit, newest first",
        responses={422: problem_spec("A filter, `limit` or `cursor` is not valid."), **AUTH_RESPONSES},
    )
    async def list_audit(
        self,
        service_name: ServiceName,
        db_session: NamedDependency[AsyncSession],
        patient_id: FromQuery[uuid.UUID | None] = None,
        actor: FromQuery[str | None] = None,
        since: FromQuery[dt.datetime | None] = None,
        until: FromQuery[dt.datetime | None] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> AuditPage:
        """Who read or changed what on this service: filter by `patient_id`, `actor` (a key's
        name or id), `since` and `until` (RFC 3339; without offset, UTC); page with `limit` and
        the previous page's `next_cursor`."""
        query = audit_query(
            service=service_name, patient_id=patient_id, actor=actor, since=since, until=until
        )
        return await audit_page(db_session, query, limit, cursor)
