"""The operator's (admin's) pages: webhook endpoints (create showing the secret once, edit,
rotate, deliveries with their status, retry, replay since a time), staff accounts (create,
disable, reset) and API keys (create showing the key once, revoke). Admin only, as the API and
`clinic users|keys`; each calls the same service functions."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from litestar import MediaType, Request, Router, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access import accounts
from services.common.access.auth import Destination, KeyError_, Role, create_api_key, revoke_api_key
from services.common.access.models import ApiKey
from services.common.access.staff_sessions import StaffMember
from services.common.contracts import labels
from services.common.contracts.vocabulary import EventType
from services.common.errors import Conflict, InvalidFields
from services.common.http.deps import Now
from services.common.http.pages.web import Staff, form_of, redirect, render, require_staff_role
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


class AdminPages:
    """The admin pages as the signed-in admin is shown them in one request, each with the
    vocabularies' words. Provided by name, `admin: AdminPagesDep`, and to an admin only: anyone
    else is shown that the page is not for their role."""

    def __init__(self, request: Request[Any, Any, Any], staff: StaffMember, session: AsyncSession) -> None:
        self.request = request
        self.staff = staff
        self.session = session

    def _render(self, template: str, status_code: int, **context: Any) -> Template:
        return render(self.request, template, status_code=status_code, **_context(**context))

    async def form(self) -> dict[str, list[str]]:
        return await form_of(self.request)

    async def endpoints_page(self, status_code: int = 200, **context: Any) -> Template:
        page = await service.list_endpoints(
            self.session, event_type=None, destination=None, limit=200, cursor=None
        )
        return self._render(
            "referral/admin_webhooks.html",
            status_code,
            endpoints=page.items,
            title="Webhook endpoints",
            **context,
        )

    async def endpoint_page(self, endpoint_id: uuid.UUID, status_code: int = 200, **context: Any) -> Template:
        endpoint = service.endpoint_view(await service.get_endpoint(self.session, endpoint_id))
        deliveries = await service.list_deliveries(
            self.session, DeliveryFilters(limit=100), endpoint_id=endpoint_id
        )
        return self._render(
            "referral/admin_webhook.html",
            status_code,
            endpoint=endpoint,
            deliveries=deliveries.items,
            notice=context.pop("notice", None) or self.request.query_params.get("notice"),
            title="Webhook endpoint",
            **context,
        )

    async def people_page(self, status_code: int = 200, **context: Any) -> Template:
        users = await accounts.list_users(self.session)
        keys = list((await self.session.execute(select(ApiKey).order_by(ApiKey.created_at))).scalars())
        return self._render(
            "referral/admin_people.html",
            status_code,
            users=users,
            keys=keys,
            title="Staff and API keys",
            **context,
        )


def provide_admin(request: Request[Any, Any, State], staff: Staff, db_session: DbSession) -> AdminPages:
    require_staff_role(staff)  # no role named: admin only
    return AdminPages(request, staff, db_session)


AdminPagesDep = NamedDependency[AdminPages]


# -- webhook endpoints ----------------------------------------------------------------------------


@get("/admin/webhooks")
async def webhooks_page(admin: AdminPagesDep) -> Template:
    return await admin.endpoints_page()


def _errors_of(exc: InvalidFields | msgspec.ValidationError) -> dict[str, list[str]]:
    if isinstance(exc, InvalidFields):
        return {p.field: [p.message] for p in exc.errors}
    message, _, where = str(exc).partition(" - at `$.")
    return {where.rstrip("`").split("[")[0] or "form": [message]}


@post("/admin/webhooks", status_code=200, media_type=MediaType.HTML)
async def create_webhook(
    admin: AdminPagesDep, target_guard: TargetGuardDep, sealing_box: SealingBoxDep
) -> Template:
    """A new endpoint; the page shows its signing secret this once."""
    values = await admin.form()
    raw: dict[str, Any] = {"url": _first(values, "url"), "event_types": values.get("event_types", [])}
    if _first(values, "description"):
        raw["description"] = _first(values, "description")
    if values.get("destinations"):
        raw["destinations"] = values["destinations"]
    try:
        data = msgspec.convert(raw, schemas.WebhookEndpointCreate)
        staff = admin.staff
        row, secret = await service.create_endpoint(
            admin.session, data, target_guard, staff.name, sealing_box, created_by_id=staff.user_id
        )
    except (InvalidFields, msgspec.ValidationError) as exc:
        await admin.session.rollback()
        return await admin.endpoints_page(422, errors=_errors_of(exc), values=values)
    await admin.session.commit()
    return await admin.endpoints_page(created=service.endpoint_view(row), secret=secret)


@get("/admin/webhooks/{endpoint_id:uuid}")
async def webhook_page(admin: AdminPagesDep, endpoint_id: FromPath[uuid.UUID]) -> Template:
    return await admin.endpoint_page(endpoint_id)


@post("/admin/webhooks/{endpoint_id:uuid}/edit", status_code=200, media_type=MediaType.HTML)
async def edit_webhook(
    admin: AdminPagesDep, endpoint_id: FromPath[uuid.UUID], target_guard: TargetGuardDep
) -> Any:
    values = await admin.form()
    raw: dict[str, Any] = {
        "url": _first(values, "url"),
        "event_types": values.get("event_types", []),
        "description": _first(values, "description") or None,
        "destinations": values.get("destinations") or None,
        "enabled": _first(values, "enabled") == "yes",
    }
    try:
        data = msgspec.convert(raw, schemas.WebhookEndpointUpdate)
        await service.update_endpoint(admin.session, endpoint_id, data, target_guard, admin.staff.name)
    except (InvalidFields, msgspec.ValidationError) as exc:
        await admin.session.rollback()
        return await admin.endpoint_page(endpoint_id, 422, errors=_errors_of(exc))
    await admin.session.commit()
    return redirect(f"/admin/webhooks/{endpoint_id}?notice=Saved.")


@post("/admin/webhooks/{endpoint_id:uuid}/rotate", status_code=200, media_type=MediaType.HTML)
async def rotate_webhook(
    admin: AdminPagesDep, endpoint_id: FromPath[uuid.UUID], sealing_box: SealingBoxDep
) -> Template:
    """A new signing secret, shown this once; the old one signs too for the grace period."""
    rotated = await service.rotate_secret(admin.session, endpoint_id, sealing_box)
    await admin.session.commit()
    return await admin.endpoint_page(endpoint_id, rotated=rotated)


@post("/admin/webhooks/{endpoint_id:uuid}/replay", status_code=200, media_type=MediaType.HTML)
async def replay_webhook(admin: AdminPagesDep, endpoint_id: FromPath[uuid.UUID]) -> Any:
    values = await admin.form()
    try:
        since = dt.datetime.fromisoformat(_first(values, "since")).replace(tzinfo=dt.UTC)
        data = schemas.ReplayRequest(
            since=since, include_succeeded=_first(values, "include_succeeded") == "yes"
        )
        result = await service.replay(admin.session, endpoint_id, data)
    except ValueError:
        return await admin.endpoint_page(endpoint_id, 422, errors={"since": ["Enter a date and time (UTC)."]})
    except Conflict as exc:
        await admin.session.rollback()
        return await admin.endpoint_page(endpoint_id, 409, conflict=str(exc.detail))
    await admin.session.commit()
    return redirect(f"/admin/webhooks/{endpoint_id}?notice=Queued again: {result.replayed}.")


@post("/admin/webhooks/{endpoint_id:uuid}/delete", status_code=200, media_type=MediaType.HTML)
async def delete_webhook(admin: AdminPagesDep, endpoint_id: FromPath[uuid.UUID]) -> Any:
    """Remove the endpoint (as `DELETE /v1/webhooks/endpoints/{id}`): nothing more is sent to it."""
    await service.delete_endpoint(admin.session, endpoint_id)
    await admin.session.commit()
    return await admin.endpoints_page(notice="The endpoint is removed.")


@post("/admin/deliveries/{delivery_id:uuid}/retry", status_code=200, media_type=MediaType.HTML)
async def retry_delivery(admin: AdminPagesDep, delivery_id: FromPath[uuid.UUID]) -> Any:
    try:
        delivery = await service.retry_delivery(admin.session, delivery_id)
    except Conflict as exc:
        await admin.session.rollback()
        row = await service.get_delivery(admin.session, delivery_id)
        return await admin.endpoint_page(row.endpoint_id, 409, conflict=str(exc.detail))
    await admin.session.commit()
    return redirect(f"/admin/webhooks/{delivery.endpoint_id}?notice=Sending again.")


# -- staff accounts and API keys ------------------------------------------------------------------


@get("/admin/people")
async def people_page(admin: AdminPagesDep) -> Template:
    return await admin.people_page()


@post("/admin/people/{what:str}", status_code=200, media_type=MediaType.HTML)
async def people_action(admin: AdminPagesDep, now: Now, what: FromPath[str]) -> Template:
    """create-user, disable-user, reset-user (a temporary password shown once), create-key (the
    key shown once), revoke-key: as `clinic users|keys`."""
    db_session = admin.session
    values = await admin.form()
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
            return await admin.people_page(404, error="There is no such action.")
    except (accounts.AccountError, KeyError_) as exc:
        await db_session.rollback()
        return await admin.people_page(422, error=str(exc))
    await db_session.commit()
    return await admin.people_page(**shown)


def admin_pages() -> Router:
    """The admin pages, each given the admin (`admin: AdminPagesDep`) and what the webhook
    handlers need (`webhooks.deps`)."""
    return Router(
        "/",
        route_handlers=[
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
        ],
        dependencies={"admin": Provide(provide_admin, sync_to_thread=False), **webhook_deps.DEPENDENCIES},
    )
