"""`POST /v1/inbound/intake-forms`: an external form system submits intakes, signed per Standard
Webhooks with `CLINIC_INBOUND_WEBHOOK_SECRET` instead of an API key.

Order matters: the signature (and its ±5 min timestamp) is checked on the raw bytes before the
body is even parsed, so an unsigned caller learns nothing about the form's rules. A `webhook-id`
is then an idempotency key of its own: a repeat within the retention gets the first response
again, and a valid signature outside the tolerance is refused anyway, so an old capture cannot
be replayed after its id has been forgotten.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from litestar import Request, Response, post
from litestar.exceptions import NotAuthorizedException, ServiceUnavailableException
from litestar.params import HeaderParameter, RawBody

from services.common.access.signing import TOLERANCE_SECONDS, SignatureError, verify
from services.common.contracts.intake_form import latest_today, parse_intake
from services.common.http.deps import ClinicSettings, Now
from services.common.http.problems import problem_spec
from services.common.http.web import DbSession
from services.intake.intakes import authors, idempotency, submissions
from services.intake.intakes.controllers import (
    WRITE_RESPONSES,
    intake_response,
)
from services.intake.intakes.schemas import Intake

#: `submitted_by` of intakes that came in through the form webhook (there is no key name).
INBOUND_AUTHOR = "inbound:intake-forms"
INBOUND_SCOPE = "inbound"


WebhookId = Annotated[
    str | None,
    HeaderParameter(name="webhook-id", description="Unique per message; a repeat gets the first response."),
]
WebhookTimestamp = Annotated[
    str | None,
    HeaderParameter(
        name="webhook-timestamp", description="Seconds since the epoch, within 5 minutes of now."
    ),
]
WebhookSignature = Annotated[
    str | None,
    HeaderParameter(
        name="webhook-signature", description='`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`'
    ),
]


@post(
    "/v1/inbound/intake-forms",
    operation_id="receiveIntakeForm",
    tags=["inbound"],
    status_code=201,
    opt={"exclude_from_auth": True},
    security=[{}],
    responses={
        **WRITE_RESPONSES,
        401: problem_spec("The signature does not verify, or its timestamp is over 5 minutes off."),
        503: problem_spec("No inbound secret is configured (CLINIC_INBOUND_WEBHOOK_SECRET)."),
    },
    summary="Receive an intake form from an external form system (Standard Webhooks)",
)
async def receive_intake_form(
    request: Request[Any, Any, Any],
    db_session: DbSession,
    settings: ClinicSettings,
    now: Now,
    body: RawBody,
    webhook_id: WebhookId = None,
    webhook_timestamp: WebhookTimestamp = None,
    webhook_signature: WebhookSignature = None,
) -> Response[Intake]:
    """The body is the one of `POST /v1/intakes`, validated the same way."""
    if settings.inbound_webhook_secret is None:
        raise ServiceUnavailableException(
            "Inbound intake forms are not configured: set CLINIC_INBOUND_WEBHOOK_SECRET."
        )
    try:
        verify(
            settings.inbound_webhook_secret, webhook_id, webhook_timestamp, webhook_signature, body, now=now
        )
    except SignatureError as exc:
        raise NotAuthorizedException(f"The webhook signature was refused: {exc}.") from exc
    message_id = idempotency.check_idempotency_key(webhook_id, field="webhook-id")
    assert message_id is not None  # verify() requires it
    intake = parse_intake(body, latest_today(now, settings.clinic_time_zone))
    claim = idempotency.IdempotencyClaim(
        scope=INBOUND_SCOPE,
        key=message_id,
        request_hash=idempotency.request_hash(request.method, request.url.path, intake),
        ttl=max(dt.timedelta(hours=settings.idempotency_hours), dt.timedelta(seconds=2 * TOLERANCE_SECONDS)),
    )
    author = authors.Author(name=INBOUND_AUTHOR, at=now, source="inbound")
    stored = await submissions.submit_intake(db_session, intake, author, claim)
    return intake_response(stored)
