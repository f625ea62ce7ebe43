"""The webhook API's bodies: endpoints, deliveries, attempts, replays."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from services.common.contracts.vocabulary import SpecialistDestination as Destination
from services.common.contracts.vocabulary import SubscribableEvent

#: What a subscriber may ask for.
EventType = SubscribableEvent


class DeliveryStatus(enum.StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    dead = "dead"


Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
Description = Annotated[str, msgspec.Meta(max_length=500)]
EventTypes = Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=len(EventType))]
#: At least one; leave the field out (or null) for every destination.
Destinations = Annotated[list[Destination], msgspec.Meta(min_length=1, max_length=len(Destination))]


class WebhookEndpointCreate(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    url: Url
    event_types: EventTypes
    destinations: Destinations | None = None
    description: Description | None = None


class WebhookEndpointUpdate(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Only the fields sent change. `enabled: true` re-enables a disabled endpoint."""

    url: Url | msgspec.UnsetType = msgspec.UNSET
    event_types: EventTypes | msgspec.UnsetType = msgspec.UNSET
    destinations: Destinations | msgspec.UnsetType | None = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class WebhookEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    url: str
    description: str | None
    event_types: list[str]
    destinations: list[str] | None
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    #: Start of the current run of failed attempts (null when the last attempt succeeded).
    failing_since: datetime | None
    #: While a rotation is in its grace period, the old secret also signs, until then.
    previous_secret_expires_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime


class WebhookEndpointCreated(WebhookEndpoint, frozen=True, kw_only=True):
    """The endpoint and its signing secret: shown here once, never again."""

    secret: str


class SecretRotated(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    secret: str
    previous_secret_expires_at: datetime


class WebhookEndpointPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[WebhookEndpoint]
    next_cursor: str | None


class WebhookAttempt(msgspec.Struct, frozen=True, kw_only=True):
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None
    response_excerpt: str | None


class WebhookDelivery(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    succeeded_at: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookDeliveryDetail(WebhookDelivery, frozen=True, kw_only=True):
    """One delivery with the body it sends and every attempt so far, oldest first."""

    payload: dict[str, Any]
    attempt_log: list[WebhookAttempt]


class WebhookDeliveryPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[WebhookDelivery]
    next_cursor: str | None


class ReplayRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Send again this endpoint's dead deliveries created since `since` (and, if asked, the
    succeeded ones too, for a subscriber that lost what it had received)."""

    since: Annotated[datetime, msgspec.Meta(tz=True)]
    include_succeeded: bool = False


class ReplayResult(msgspec.Struct, frozen=True, kw_only=True):
    replayed: int
