"""The operator's (admin's) pages: webhook endpoints (create showing the secret once, edit,
rotate, deliveries with their status, retry, replay since a time), staff accounts (create,
disable, reset) and API keys (create showing the key once, revoke). Admin only, as the API and
`clinic users|keys`; each calls the same service functions."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from litestar import MediaType, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access import accounts
from services.common.access.auth import Destination, KeyError_, Role, create_api_key, revoke_api_key
from services.common.access.models import ApiKey
from services.common.contracts import labels
from services.common.contracts.vocabulary import EventType
from services.common.errors import Conflict, InvalidFields
from services.common.http.deps import Now
from services.common.http.pages import Staff, form_of, redirect, render, require_staff_role
from services.common.http.web import DbSession
from services.referral.webhooks import deps as webhook_deps
from services.referral.webhooks import schemas, service
from services.referral.webhooks.deps import SealingBoxDep, TargetGuardDep
from services.referral.webhooks.service import DeliveryFilters

#: `require_staff_role(staff)` with no role named: admin only.
ROLES = [r.value for r in Role]
DESTINATIONS = [d.value for d in Destination]
EVENT_TYPES = [e.value for e in schemas.EventType]
#: How the pages show those codes: the vocabulary's words.
WORDS = {
    "role_labels": labels.word_labels(Role),
    "destination_labels": labels.word_labels(Destination),
    "event_labels": labels.word_labels(EventType),
}


def _context(**context: Any) -> dict[str, Any]:
    return {"roles": ROLES, "destinations": DESTINATIONS, "event_types": EVENT_TYPES, **WORDS, **context}


def _first(values: dict[str, list[str]], name: str) -> str:
    return (values.get(name) or [""])[0].strip()


# -- webhook endpoints ----------------------------------------------------------------------------


async def _endpoints_page(
    request: Request[Any, Any, Any], session: AsyncSession, status_code: int = 200, **context: Any
) -> Template:
    page = await service.list_endpoints(session, event_type=None, destination=None, limit=200, cursor=None)
    return render(
        request,
        "referral/admin_webhooks.html",
        status_code=status_code,
        **_context(endpoints=page.items, title="Webhook endpoints", **context),
    )


@get("/admin/webhooks")
async def webhooks_page(request: Request[Any, Any, State], staff: Staff, db_session: DbSession) -> Template:
    require_staff_role(staff)
    return await _endpoints_page(request, db_session)


def _errors_of(exc: InvalidFields | msgspec.ValidationError) -> dict[str, list[str]]:
    if isinstance(exc, InvalidFields):
        return {p.field: [p.message] for p in exc.errors}
    message, _, where = str(exc).partition(" - at `$.")
    return {where.rstrip("`").split("[")[0] or "form": [message]}


@post("/admin/webhooks", status_code=200, media_type=MediaType.HTML, dependencies=webhook_deps.DEPENDENCIES)
async def create_webhook(
    request: Request[Any, Any, State],
    staff: Staff,
    db_session: DbSession,
    target_guard: TargetGuardDep,
    sealing_box: SealingBoxDep,
) -> Template:
    """A new endpoint; the page shows its signing secret this once."""
    require_staff_role(staff)
    values = await form_of(request)
    raw: dict[str, Any] = {"url": _first(values, "url"), "event_types": values.get("event_types", [])}
    if _first(values, "description"):
        raw["description"] = _first(values, "description")
    if values.get("destinations"):
        raw["destinations"] = values["destinations"]
    try:
        data = msgspec.convert(raw, schemas.WebhookEndpointCreate)
        row, secret = await service.create_endpoint(
            db_session, data, target_guard, staff.name, sealing_box, created_by_id=staff.user_id
        )
    except (InvalidFields, msgspec.ValidationError) as exc:
        await db_session.rollback()
        return await _endpoints_page(request, db_session, 422, errors=_errors_of(exc), values=values)
    await db_session.commit()
    return await _endpoints_page(request, db_session, created=service.endpoint_view(row), secret=secret)


async def _endpoint_page(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    status_code: int = 200,
    **context: Any,
) -> Template:
    endpoint = service.endpoint_view(await service.get_endpoint(session, endpoint_id))
    deliveries = await service.list_deliveries(session, DeliveryFilters(limit=100), endpoint_id=endpoint_id)
    return render(
        request,
        "referral/admin_webhook.html",
        status_code=status_code,
        **_context(
            endpoint=endpoint,
            deliveries=deliveries.items,
            notice=context.pop("notice", None) or request.query_params.get("notice"),
            title="Webhook endpoint",
            **context,
        ),
    )


@get("/admin/webhooks/{endpoint_id:uuid}")
async def webhook_page(
    request: Request[Any, Any, State], staff: Staff, db_session: DbSession, endpoint_id: FromPath[uuid.UUID]
) -> Template:
    require_staff_role(staff)
    return await _endpoint_page(request, db_session, endpoint_id)


@post(
    "/admin/webhooks/{endpoint_id:uuid}/edit",
    status_code=200,
    media_type=MediaType.HTML,
    dependencies=webhook_deps.DEPENDENCIES,
)
async def edit_webhook(
    request: Request[Any, Any, State],
    staff: Staff,
    db_session: DbSession,
    endpoint_id: FromPath[uuid.UUID],
    target_guard: TargetGuardDep,
) -> Any:
    require_staff_role(staff)
    values = await form_of(request)
    raw: dict[str, Any] = {
        "url": _first(values, "url"),
        "event_types": values.get("event_types", []),
        "description": _first(values, "description") or None,
        "destinations": values.get("destinations") or None,
        "enabled": _first(values, "enabled") == "yes",
    }
    try:
        data = msgspec.convert(raw, schemas.WebhookEndpointUpdate)
        await service.update_endpoint(db_session, endpoint_id, data, target_guard, staff.name)
    except (InvalidFields, msgspec.ValidationError) as exc:
        await db_session.rollback()
        return await _endpoint_page(request, db_session, endpoint_id, 422, errors=_errors_of(exc))
    await db_session.commit()
    return redirect(f"/admin/webhooks/{endpoint_id}?notice=Saved.")


@post(
    "/admin/webhooks/{endpoint_id:uuid}/rotate",
    status_code=200,
    media_type=MediaType.HTML,
    dependencies=webhook_deps.DEPENDENCIES,
)
async def rotate_webhook(
    request: Request[Any, Any, State],
    staff: Staff,
    db_session: DbSession,
    endpoint_id: FromPath[uuid.UUID],
    sealing_box: SealingBoxDep,
) -> Template:
    """A new signing secret, shown this once; the old one signs too for the grace period."""
    require_staff_role(staff)
    rotated = await service.rotate_secret(db_session, endpoint_id, sealing_box)
    await db_session.commit()
    return await _endpoint_page(request, db_session, endpoint_id, rotated=rotated)


@post("/admin/webhooks/{endpoint_id:uuid}/replay", status_code=200, media_type=MediaType.HTML)
async def replay_webhook(
    request: Request[Any, Any, State], staff: Staff, db_session: DbSession, endpoint_id: FromPath[uuid.UUID]
) -> Any:
    require_staff_role(staff)
    values = await form_of(request)
    try:
        since = dt.datetime.fromisoformat(_first(values, "since")).replace(tzinfo=dt.UTC)
        data = schemas.ReplayRequest(
            since=since, include_succeeded=_first(values, "include_succeeded") == "yes"
        )
        result = await service.replay(db_session, endpoint_id, data)
    except ValueError:
        return await _endpoint_page(
            request, db_session, endpoint_id, 422, errors={"since": ["Enter a date and time (UTC)."]}
        )
    except Conflict as exc:
        await db_session.rollback()
        return await _endpoint_page(request, db_session, endpoint_id, 409, conflict=str(exc.detail))
    await db_session.commit()
    return redirect(f"/admin/webhooks/{endpoint_id}?notice=Queued again: {result.replayed}.")


@post("/admin/webhooks/{endpoint_id:uuid}/delete", status_code=200, media_type=MediaType.HTML)
async def delete_webhook(
    request: Request[Any, Any, State], staff: Staff, db_session: DbSession, endpoint_id: FromPath[uuid.UUID]
) -> Any:
    """Remove the endpoint (as `DELETE /v1/webhooks/endpoints/{id}`): nothing more is sent to it."""
    require_staff_role(staff)
    await service.delete_endpoint(db_session, endpoint_id)
    await db_session.commit()
    return await _endpoints_page(request, db_session, notice="The endpoint is removed.")


@post("/admin/deliveries/{delivery_id:uuid}/retry", status_code=200, media_type=MediaType.HTML)
async def retry_delivery(
    request: Request[Any, Any, State], staff: Staff, db_session: DbSession, delivery_id: FromPath[uuid.UUID]
) -> Any:
    require_staff_role(staff)
    try:
        delivery = await service.retry_delivery(db_session, delivery_id)
    except Conflict as exc:
        await db_session.rollback()
        row = await service.get_delivery(db_session, delivery_id)
        return await _endpoint_page(request, db_session, row.endpoint_id, 409, conflict=str(exc.detail))
    await db_session.commit()
    return redirect(f"/admin/webhooks/{delivery.endpoint_id}?notice=Sending again.")


# -- staff accounts and API keys ------------------------------------------------------------------


async def _people_page(
    request: Request[Any, Any, Any], session: AsyncSession, status_code: int = 200, **context: Any
) -> Template:
    users = await accounts.list_users(session)
    keys = list((await session.execute(select(ApiKey).order_by(ApiKey.created_at))).scalars())
    return render(
        request,
        "referral/admin_people.html",
        status_code=status_code,
        **_context(users=users, keys=keys, title="Staff and API keys", **context),
    )


@get("/admin/people")
async def people_page(request: Request[Any, Any, State], staff: Staff, db_session: DbSession) -> Template:
    require_staff_role(staff)
    return await _people_page(request, db_session)


@post("/admin/people/{what:str}", status_code=200, media_type=MediaType.HTML)
async def people_action(
    request: Request[Any, Any, State], staff: Staff, db_session: DbSession, now: Now, what: FromPath[str]
) -> Template:
    """create-user, disable-user, reset-user (a temporary password shown once), create-key (the
    key shown once), revoke-key: as `clinic users|keys`."""
    require_staff_role(staff)
    values = await form_of(request)
    destination = _first(values, "destination") or None
    shown: dict[str, Any] = {}
    try:
        if what == "create-user":
            password, user = await accounts.create_user(
                db_session,
                role=_first(values, "role"),
                name=_first(values, "name"),
                email=_first(values, "email"),
                destination=destination,
                now=now,
            )
            shown = {"secret_for": user.email, "secret": password, "secret_kind": "temporary password"}
        elif what == "disable-user":
            await accounts.disable_user(db_session, _first(values, "email"), now)
            shown = {"notice": f"{_first(values, 'email')} is disabled and signed out."}
        elif what == "reset-user":
            password, user = await accounts.reset_user(db_session, _first(values, "email"), now)
            shown = {"secret_for": user.email, "secret": password, "secret_kind": "temporary password"}
        elif what == "create-key":
            key, row = await create_api_key(
                db_session, role=_first(values, "role"), name=_first(values, "name"), destination=destination
            )
            shown = {"secret_for": row.name, "secret": key, "secret_kind": "API key"}
        elif what == "revoke-key":
            count = await revoke_api_key(db_session, _first(values, "name"))
            shown = {"notice": f"Revoked {count} key(s) named {_first(values, 'name')}."}
        else:
            return await _people_page(request, db_session, 404, error="There is no such action.")
    except (accounts.AccountError, KeyError_) as exc:
        await db_session.rollback()
        return await _people_page(request, db_session, 422, error=str(exc))
    await db_session.commit()
    return await _people_page(request, db_session, **shown)


def admin_handlers() -> list[Any]:
    return [
        webhooks_page,
        create_webhook,
        webhook_page,
        edit_webhook,
        rotate_webhook,
        replay_webhook,
        delete_webhook,
        retry_delivery,
        people_page,
        people_action,
    ]
