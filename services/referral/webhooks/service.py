"""The rules of webhook endpoints and deliveries: what an admin may do and what it changes.

Controllers call these with the request's session and commit after; the sender and the consumer
have their own paths (`sender.py`, `consumer.py`) and share only `disable_endpoint`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import or_, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.secret_box import NoSecretKey, SecretBox
from services.common.access.signing import new_secret
from services.common.errors import Conflict, FieldProblem, InvalidFields, NotFound, Unavailable
from services.common.http.pagination import DEFAULT_LIMIT, newest_first, page_of
from services.common.queue import refresh_demand
from services.referral.db import webhooks as models
from services.referral.webhooks import schemas
from services.referral.webhooks.bookkeeping import disable_endpoint
from services.referral.webhooks.consumer import CONSUMER_NAME
from services.referral.webhooks.ssrf import TargetError, TargetGuard

#: After a rotation the replaced secret keeps signing (a second signature) for this long.
ROTATION_GRACE = timedelta(hours=24)


def _now() -> datetime:
    return datetime.now(UTC)


# -- views -----------------------------------------------------------------------------------


def endpoint_view(row: models.WebhookEndpoint) -> schemas.WebhookEndpoint:
    expires = row.previous_secret_expires_at
    return schemas.WebhookEndpoint(
        id=row.id,
        url=row.url,
        description=row.description,
        event_types=list(row.event_types),
        destinations=list(row.destinations) if row.destinations is not None else None,
        enabled=row.disabled_at is None,
        disabled_at=row.disabled_at,
        disabled_reason=row.disabled_reason,
        failing_since=row.first_failure_at,
        previous_secret_expires_at=expires if expires is not None and expires > _now() else None,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _delivery_fields(row: models.WebhookDelivery) -> dict[str, Any]:
    return {
        "id": row.id,
        "endpoint_id": row.endpoint_id,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "status": schemas.DeliveryStatus(row.status),
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at if row.status == "pending" else None,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "succeeded_at": row.succeeded_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def delivery_view(row: models.WebhookDelivery) -> schemas.WebhookDelivery:
    return schemas.WebhookDelivery(**_delivery_fields(row))


def delivery_detail(
    row: models.WebhookDelivery, attempts: list[models.WebhookAttempt]
) -> schemas.WebhookDeliveryDetail:
    return schemas.WebhookDeliveryDetail(
        **_delivery_fields(row),
        payload=row.payload,
        attempt_log=[
            schemas.WebhookAttempt(
                attempted_at=a.attempted_at,
                status_code=a.status_code,
                latency_ms=a.latency_ms,
                error=a.error,
                response_excerpt=a.response_excerpt,
            )
            for a in attempts
        ],
    )


# -- endpoints -------------------------------------------------------------------------------


async def _checked_url(guard: TargetGuard, url: str) -> str:
    url = url.strip()
    try:
        await guard.check(url)
    except TargetError as exc:
        raise InvalidFields([FieldProblem(field="url", message=str(exc))]) from exc
    return url


async def _refresh_demand(session: AsyncSession) -> None:
    """The queue writes webhook work only for event types some enabled endpoint subscribes to;
    tell it, in this transaction, what the endpoints now subscribe to."""
    try:
        await refresh_demand(session, CONSUMER_NAME)
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_timeout: publishers held it
            raise Unavailable("The event queue is busy; try again in a moment.") from exc
        raise


def _sealing(box: SecretBox | None) -> SecretBox:
    """The box that seals new secrets; without a configured key no secret can be kept (503)."""
    if box is None:
        raise Unavailable(str(NoSecretKey()))
    return box


def _unique(values: list[Any]) -> list[str]:
    return list(dict.fromkeys(str(v) for v in values))


async def create_endpoint(
    session: AsyncSession,
    data: schemas.WebhookEndpointCreate,
    guard: TargetGuard,
    created_by: str,
    box: SecretBox | None,
    created_by_id: uuid.UUID | None = None,
) -> tuple[models.WebhookEndpoint, str]:
    """A new endpoint and its signing secret (returned once, never shown again; stored sealed)."""
    sealing = _sealing(box)
    url = await _checked_url(guard, data.url)
    secret = new_secret()
    now = _now()
    row = models.WebhookEndpoint(
        id=uuid.uuid4(),
        url=url,
        description=data.description,
        event_types=_unique(data.event_types),
        destinations=_unique(data.destinations) if data.destinations is not None else None,
        secret=sealing.seal(secret),
        created_by=created_by,
        created_by_id=created_by_id,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    await _refresh_demand(session)
    return row, secret


async def get_endpoint(
    session: AsyncSession, endpoint_id: uuid.UUID, *, lock: bool = False, deleted_too: bool = False
) -> models.WebhookEndpoint:
    """The endpoint; a deleted one is missing (404) unless `deleted_too` (its delivery history)."""
    query = select(models.WebhookEndpoint).where(models.WebhookEndpoint.id == endpoint_id)
    if not deleted_too:
        query = query.where(models.WebhookEndpoint.deleted_at.is_(None))
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"No webhook endpoint {endpoint_id}.")
    return row


def _key(row: models.WebhookEndpoint | models.WebhookDelivery) -> tuple[datetime, uuid.UUID]:
    """The sort key a page's cursor carries (`newest_first`'s columns)."""
    return (row.created_at, row.id)


async def list_endpoints(
    session: AsyncSession,
    *,
    event_type: schemas.EventType | None,
    destination: str | None,
    limit: int,
    cursor: str | None,
) -> schemas.WebhookEndpointPage:
    """Newest first. `destination` matches endpoints that get that destination's events (those
    filtered on it and those with no destination filter)."""
    e = models.WebhookEndpoint
    query = select(e).where(e.deleted_at.is_(None))
    if event_type is not None:
        query = query.where(e.event_types.any_() == event_type.value)
    if destination is not None:
        query = query.where(or_(e.destinations.is_(None), e.destinations.any_() == destination))
    query = newest_first(query, e.created_at, e.id, cursor)
    rows, next_cursor = page_of(list((await session.execute(query.limit(limit + 1))).scalars()), limit, _key)
    return schemas.WebhookEndpointPage(items=[endpoint_view(r) for r in rows], next_cursor=next_cursor)


async def update_endpoint(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    data: schemas.WebhookEndpointUpdate,
    guard: TargetGuard,
    by: str,
) -> models.WebhookEndpoint:
    row = await get_endpoint(session, endpoint_id, lock=True)
    if not isinstance(data.url, msgspec.UnsetType):
        row.url = await _checked_url(guard, data.url)
    if not isinstance(data.event_types, msgspec.UnsetType):
        row.event_types = _unique(data.event_types)
    if not isinstance(data.destinations, msgspec.UnsetType):
        row.destinations = _unique(data.destinations) if data.destinations is not None else None
    if not isinstance(data.description, msgspec.UnsetType):
        row.description = data.description
    row.updated_at = _now()
    await session.flush()
    if data.enabled is True and row.disabled_at is not None:
        row.disabled_at = None
        row.disabled_reason = None
        row.first_failure_at = None
        await session.flush()
    elif data.enabled is False and row.disabled_at is None:
        await disable_endpoint(session, row.id, f"disabled by {by}")
        await session.refresh(row)
    await _refresh_demand(session)
    return row


_DELETED_PENDING = text(
    """
    UPDATE referral.webhook_deliveries
    SET status = 'dead', updated_at = now(),
        last_error = left(coalesce(last_error || '; ', '') || 'endpoint deleted', 2000)
    WHERE endpoint_id = :id AND status = 'pending'
    """
)


async def delete_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> None:
    """Soft delete: the endpoint is gone from the API (404, absent from lists) and gets no new
    deliveries; its row and its delivery history stay (pending deliveries are marked dead, so
    nothing more is sent). A send already in flight still records its outcome."""
    row = await get_endpoint(session, endpoint_id, lock=True)
    now = _now()
    row.deleted_at = now
    row.updated_at = now
    await session.flush()
    await session.execute(_DELETED_PENDING, {"id": endpoint_id})
    await _refresh_demand(session)


async def rotate_secret(
    session: AsyncSession, endpoint_id: uuid.UUID, box: SecretBox | None
) -> schemas.SecretRotated:
    """A new secret signs from now on; the one it replaces also signs for `ROTATION_GRACE`, so
    the subscriber can switch without losing a message. (Rotating again within the grace drops
    the oldest secret.) Both are kept sealed; the old one moves over as it is."""
    sealing = _sealing(box)
    row = await get_endpoint(session, endpoint_id, lock=True)
    secret = new_secret()
    now = _now()
    row.previous_secret = row.secret
    row.previous_secret_expires_at = now + ROTATION_GRACE
    row.secret = sealing.seal(secret)
    row.updated_at = now
    await session.flush()
    return schemas.SecretRotated(id=row.id, secret=secret, previous_secret_expires_at=now + ROTATION_GRACE)


# -- deliveries ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryFilters:
    status: schemas.DeliveryStatus | None = None
    event_type: schemas.EventType | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


async def list_deliveries(
    session: AsyncSession,
    filters: DeliveryFilters,
    *,
    endpoint_id: uuid.UUID | None = None,
    deleted_too: bool = False,
) -> schemas.WebhookDeliveryPage:
    """Newest first. With `deleted_too`, a deleted endpoint's history is listed too (the
    delivery log keeps it); an endpoint's own delivery list is 404 once it is deleted."""
    d = models.WebhookDelivery
    query = select(d)
    if endpoint_id is not None:
        await get_endpoint(session, endpoint_id, deleted_too=deleted_too)
        query = query.where(d.endpoint_id == endpoint_id)
    if filters.status is not None:
        query = query.where(d.status == filters.status.value)
    if filters.event_type is not None:
        query = query.where(d.event_type == filters.event_type.value)
    query = newest_first(query, d.created_at, d.id, filters.cursor)
    found = list((await session.execute(query.limit(filters.limit + 1))).scalars())
    rows, next_cursor = page_of(found, filters.limit, _key)
    return schemas.WebhookDeliveryPage(items=[delivery_view(r) for r in rows], next_cursor=next_cursor)


async def get_delivery(session: AsyncSession, delivery_id: uuid.UUID) -> schemas.WebhookDeliveryDetail:
    row = await session.get(models.WebhookDelivery, delivery_id)
    if row is None:
        raise NotFound(f"No webhook delivery {delivery_id}.")
    a = models.WebhookAttempt
    attempts = list(
        (
            await session.execute(
                select(a).where(a.delivery_id == delivery_id).order_by(a.attempted_at, a.id)
            )
        ).scalars()
    )
    return delivery_detail(row, attempts)


def _require_enabled(endpoint: models.WebhookEndpoint) -> None:
    if endpoint.disabled_at is not None:
        raise Conflict(
            f"The endpoint is disabled ({endpoint.disabled_reason}); enable it first "
            '(PATCH with {"enabled": true}).',
            endpoint_id=str(endpoint.id),
        )


_RETRY = text(
    """
    UPDATE referral.webhook_deliveries
    SET status = 'pending', next_attempt_at = now(), updated_at = now(),
        attempts = CASE WHEN status = 'pending' THEN attempts ELSE 0 END
    WHERE id = :id AND (leased_until IS NULL OR leased_until <= now())
    RETURNING id
    """
)


async def retry_delivery(session: AsyncSession, delivery_id: uuid.UUID) -> schemas.WebhookDelivery:
    """Send it again now: a dead (or succeeded) delivery starts a fresh retry schedule; a pending
    one just stops waiting. 409 while an attempt is in flight or the endpoint is disabled."""
    row = await session.get(models.WebhookDelivery, delivery_id, with_for_update=True)
    if row is None:
        raise NotFound(f"No webhook delivery {delivery_id}.")
    _require_enabled(await get_endpoint(session, row.endpoint_id))
    done = (await session.execute(_RETRY, {"id": delivery_id})).first()
    if done is None:
        raise Conflict("An attempt is in flight; its outcome will show in a moment.")
    await session.refresh(row)
    return delivery_view(row)


_REPLAY = text(
    """
    UPDATE referral.webhook_deliveries
    SET status = 'pending', attempts = 0, next_attempt_at = now(), updated_at = now()
    WHERE endpoint_id = :endpoint_id AND created_at >= :since
      AND (status = 'dead' OR (:include_succeeded AND status = 'succeeded'))
      AND (leased_until IS NULL OR leased_until <= now())
    """
)


async def replay(
    session: AsyncSession, endpoint_id: uuid.UUID, data: schemas.ReplayRequest
) -> schemas.ReplayResult:
    """Queue again the endpoint's dead deliveries (and succeeded ones, if asked) since `since`."""
    endpoint = await get_endpoint(session, endpoint_id, lock=True)
    _require_enabled(endpoint)
    result = await session.execute(
        _REPLAY,
        {"endpoint_id": endpoint_id, "since": data.since, "include_succeeded": data.include_succeeded},
    )
    return schemas.ReplayResult(replayed=int(getattr(result, "rowcount", 0) or 0))
