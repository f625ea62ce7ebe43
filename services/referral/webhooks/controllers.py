"""HTTP for webhook endpoints and deliveries (admin only)."""

from __future__ import annotations

import uuid

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from services.common.access.auth import Destination, Role, require_roles
from services.common.http.deps import Caller
from services.common.http.pagination import DEFAULT_LIMIT, Limit
from services.common.http.problems import AUTH_RESPONSES, problem_spec
from services.common.http.web import DbSession
from services.referral.webhooks import deps, schemas, service
from services.referral.webhooks.deps import SealingBoxDep, TargetGuardDep
from services.referral.webhooks.service import DeliveryFilters

ADMIN = require_roles(Role.admin)


INVALID = {
    422: problem_spec("A field or query parameter is not valid; `errors` names it by its path."),
    **AUTH_RESPONSES,
}
NO_KEY = {503: problem_spec("No key to seal signing secrets with is configured (CLINIC_SECRET_KEY).")}
MISSING = {404: problem_spec("There is no such endpoint or delivery."), **AUTH_RESPONSES}
CONFLICT = {409: problem_spec("The endpoint is disabled, or an attempt is in flight.")}


#: The delivery lists' filters (enums, so a wrong value is a 422 listing the allowed ones).
StatusFilter = FromQuery[schemas.DeliveryStatus | None]
EventTypeFilter = FromQuery[schemas.EventType | None]


class WebhookEndpointController(Controller):
    path = "/v1/webhooks/endpoints"
    tags = ["webhooks"]
    guards = [ADMIN]
    dependencies = deps.DEPENDENCIES

    @post(
        "/",
        operation_id="createWebhookEndpoint",
        summary="Subscribe a webhook endpoint",
        responses={**INVALID, **NO_KEY},
    )
    async def create_endpoint(
        self,
        caller: Caller,
        target_guard: TargetGuardDep,
        sealing_box: SealingBoxDep,
        db_session: DbSession,
        data: JSONBody[schemas.WebhookEndpointCreate],
    ) -> schemas.WebhookEndpointCreated:
        """Subscribe a URL to event types (optionally only some destinations' events). The
        answer carries the signing secret (`whsec_...`): store it now, it is never shown again."""
        row, secret = await service.create_endpoint(
            db_session, data, target_guard, caller.name, sealing_box, created_by_id=caller.key_id
        )
        view = service.endpoint_view(row)
        await db_session.commit()
        return schemas.WebhookEndpointCreated(**msgspec.structs.asdict(view), secret=secret)

    @get(
        "/", operation_id="listWebhookEndpoints", summary="Webhook endpoints, newest first", responses=INVALID
    )
    async def list_endpoints(
        self,
        db_session: DbSession,
        event_type: EventTypeFilter = None,
        destination: FromQuery[Destination | None] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> schemas.WebhookEndpointPage:
        """Newest first; filter by an event type they get, or a destination whose events they get."""
        return await service.list_endpoints(
            db_session,
            event_type=event_type,
            destination=destination.value if destination is not None else None,
            limit=limit,
            cursor=cursor,
        )

    @get(
        "/{endpoint_id:uuid}",
        operation_id="getWebhookEndpoint",
        summary="A webhook endpoint",
        responses=MISSING,
    )
    async def get_endpoint(
        self, db_session: DbSession, endpoint_id: FromPath[uuid.UUID]
    ) -> schemas.WebhookEndpoint:
        """The endpoint's subscription and state (never its secret)."""
        return service.endpoint_view(await service.get_endpoint(db_session, endpoint_id))

    @patch(
        "/{endpoint_id:uuid}",
        operation_id="updateWebhookEndpoint",
        summary="Change a webhook endpoint",
        responses={**INVALID, **MISSING},
    )
    async def update_endpoint(
        self,
        caller: Caller,
        target_guard: TargetGuardDep,
        db_session: DbSession,
        endpoint_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.WebhookEndpointUpdate],
    ) -> schemas.WebhookEndpoint:
        """Change what is sent where. `enabled: false` disables it (pending deliveries go to the
        dead list); `enabled: true` enables it again (replay what it missed)."""
        row = await service.update_endpoint(db_session, endpoint_id, data, target_guard, caller.name)
        view = service.endpoint_view(row)
        await db_session.commit()
        return view

    @delete(
        "/{endpoint_id:uuid}",
        operation_id="deleteWebhookEndpoint",
        summary="Remove a webhook endpoint",
        status_code=HTTP_204_NO_CONTENT,
        responses=MISSING,
    )
    async def delete_endpoint(self, db_session: DbSession, endpoint_id: FromPath[uuid.UUID]) -> None:
        """The endpoint is removed: 404 from now on, absent from lists, sent nothing more (its
        pending deliveries are marked dead). Its delivery history stays in the delivery log."""
        await service.delete_endpoint(db_session, endpoint_id)
        await db_session.commit()

    @post(
        "/{endpoint_id:uuid}/rotate-secret",
        operation_id="rotateWebhookSecret",
        summary="Rotate an endpoint's signing secret",
        status_code=HTTP_200_OK,
        responses={**MISSING, **NO_KEY},
    )
    async def rotate_secret(
        self, sealing_box: SealingBoxDep, db_session: DbSession, endpoint_id: FromPath[uuid.UUID]
    ) -> schemas.SecretRotated:
        """A new signing secret (shown once). For 24 h every message carries two signatures, one
        per secret, so the subscriber can switch over without missing one."""
        rotated = await service.rotate_secret(db_session, endpoint_id, sealing_box)
        await db_session.commit()
        return rotated

    @get(
        "/{endpoint_id:uuid}/deliveries",
        operation_id="listWebhookEndpointDeliveries",
        summary="An endpoint's deliveries, newest first",
        responses={**INVALID, **MISSING},
    )
    async def list_endpoint_deliveries(
        self,
        db_session: DbSession,
        endpoint_id: FromPath[uuid.UUID],
        status: StatusFilter = None,
        event_type: EventTypeFilter = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> schemas.WebhookDeliveryPage:
        """This endpoint's deliveries, newest first."""
        filters = DeliveryFilters(status=status, event_type=event_type, limit=limit, cursor=cursor)
        return await service.list_deliveries(db_session, filters, endpoint_id=endpoint_id)

    @post(
        "/{endpoint_id:uuid}/replay",
        operation_id="replayWebhookDeliveries",
        summary="Send an endpoint's deliveries again",
        status_code=HTTP_202_ACCEPTED,
        responses={**INVALID, **MISSING, **CONFLICT},
    )
    async def replay(
        self,
        db_session: DbSession,
        endpoint_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.ReplayRequest],
    ) -> schemas.ReplayResult:
        """Send again the endpoint's dead deliveries created since `since` (with
        `include_succeeded`, the delivered ones too), each with a fresh retry schedule."""
        result = await service.replay(db_session, endpoint_id, data)
        await db_session.commit()
        return result


class WebhookDeliveryController(Controller):
    path = "/v1/webhooks/deliveries"
    tags = ["webhooks"]
    guards = [ADMIN]

    @get(
        "/",
        operation_id="listWebhookDeliveries",
        summary="Webhook deliveries, newest first",
        responses=INVALID,
    )
    async def list_deliveries(
        self,
        db_session: DbSession,
        status: StatusFilter = None,
        event_type: EventTypeFilter = None,
        endpoint_id: FromQuery[uuid.UUID | None] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> schemas.WebhookDeliveryPage:
        """Every endpoint's deliveries, newest first; `?status=dead` is the dead-letter list. A
        deleted endpoint's deliveries stay here (and `endpoint_id` may name a deleted endpoint)."""
        filters = DeliveryFilters(status=status, event_type=event_type, limit=limit, cursor=cursor)
        return await service.list_deliveries(db_session, filters, endpoint_id=endpoint_id, deleted_too=True)

    @get(
        "/{delivery_id:uuid}",
        operation_id="getWebhookDelivery",
        summary="A webhook delivery with its attempts",
        responses=MISSING,
    )
    async def get_delivery(
        self, db_session: DbSession, delivery_id: FromPath[uuid.UUID]
    ) -> schemas.WebhookDeliveryDetail:
        """One delivery, the body it sends and every attempt (status, latency, response excerpt)."""
        return await service.get_delivery(db_session, delivery_id)

    @post(
        "/{delivery_id:uuid}/retry",
        operation_id="retryWebhookDelivery",
        summary="Retry a webhook delivery now",
        status_code=HTTP_202_ACCEPTED,
        responses={**MISSING, **CONFLICT},
    )
    async def retry(self, db_session: DbSession, delivery_id: FromPath[uuid.UUID]) -> schemas.WebhookDelivery:
        """Send it again now (a dead one gets a fresh retry schedule)."""
        view = await service.retry_delivery(db_session, delivery_id)
        await db_session.commit()
        return view


route_handlers = [WebhookEndpointController, WebhookDeliveryController]
