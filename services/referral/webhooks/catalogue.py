"""The outgoing webhooks as the referral service's OpenAPI document lists them (OpenAPI 3.1
`webhooks`): one POST per event type a subscriber may ask for, its body's schema built from the
fields the consumer lets out (`THIN_FIELDS`), so the document cannot promise a field that is not
sent, nor leave one out."""

from __future__ import annotations

import datetime as dt
import types
import typing
from typing import Annotated, Any, Literal

import msgspec

from services.common.contracts.events import Payload
from services.common.contracts.vocabulary import EventType
from services.common.http.openapi import OutgoingWebhook
from services.referral.webhooks.consumer import THIN_FIELDS

#: Standard Webhooks headers on every call.
HEADERS = {
    "webhook-id": "The delivery's id: the same on every attempt of one delivery (deduplicate on it).",
    "webhook-timestamp": "Unix seconds when this attempt was signed; refuse one far from your clock.",
    "webhook-signature": "`v1,<base64 HMAC-SHA256>` of `id.timestamp.body` with the endpoint's secret; "
    "during a secret rotation a second, space-separated signature with the previous one.",
}
ACKNOWLEDGEMENT = (
    "Received. Any 2xx within the timeout acknowledges; anything else is retried with backoff, "
    "`410 Gone` disables the endpoint."
)


def _camel(event_type: str) -> str:
    words = event_type.replace(".", "_").split("_")
    return "".join(w.title() for w in words)


def _aware(tp: Any) -> Any:
    """Times leave the clinic in UTC with an offset: say so (`format: date-time`)."""
    if tp is dt.datetime:
        return Annotated[dt.datetime, msgspec.Meta(tz=True)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.Union[tuple(_aware(arg) for arg in typing.get_args(tp))]  # noqa: UP007
    return tp


def webhook_body(payload_type: type[Payload]) -> type[msgspec.Struct]:
    """The body subscribers get for one event type: `type`, `timestamp` and the thin `data`."""
    hints = typing.get_type_hints(payload_type)
    name = _camel(payload_type.TYPE)
    data = msgspec.defstruct(
        f"{name}Data", [(f, _aware(hints[f])) for f in THIN_FIELDS[payload_type]], kw_only=True, frozen=True
    )
    return msgspec.defstruct(
        f"{name}Webhook",
        [("type", Literal[payload_type.TYPE]), ("timestamp", _aware(dt.datetime)), ("data", data)],  # type: ignore[name-defined]
        kw_only=True,
        frozen=True,
    )


def outgoing_webhooks() -> list[OutgoingWebhook]:
    """One entry per event type that leaves the clinic."""
    return [
        OutgoingWebhook(
            name=payload_type.TYPE,
            operation_id=_camel(payload_type.TYPE)[0].lower() + _camel(payload_type.TYPE)[1:],
            summary=EventType(payload_type.TYPE).label,
            description=(payload_type.__doc__ or "").strip()
            + "\n\nThin on purpose: ids, destination, priority, status and dates, never patient data; "
            "fetch the details with your own key.",
            body=webhook_body(payload_type),
            headers=HEADERS,
            acknowledgement=ACKNOWLEDGEMENT,
        )
        for payload_type in THIN_FIELDS
    ]
