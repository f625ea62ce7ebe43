"""Event types both services exchange, and who consumes them.

Events are past tense and versioned. The envelope (`Envelope`) is what the queue stores and hands
to consumers; `data` is one of the payload structs below, encoded as JSON. Events travel inside
PostgreSQL only; what leaves the clinic (webhooks) is built from them separately and thinner.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar

import msgspec

from services.common.contracts.intake_body import IntakeBody
from services.common.contracts.vocabulary import ConsumerName, EventType


class Payload(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event payload: each subclass names its type and version."""

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1
    #: Fields that carry the patient's data. The queue drops them from an event once every
    #: delivery of it has succeeded (`services.common.queue.upkeep.redact_handled`).
    PATIENT_FIELDS: ClassVar[tuple[str, ...]] = ()


class IntakeSubmitted(Payload, frozen=True, kw_only=True):
    """A new intake (version 1). Carries the form, since the referral service may not read the
    intake schema and needs the facts to triage, the patient snapshot and the clinical picture
    (contacts and notes included) to show the referral's destination: the README's "What the
    referral service receives" says field by field who needs what. Not who typed it: the
    referral service has no use for the front-desk person's name (the intake keeps it)."""

    TYPE: ClassVar[str] = EventType.INTAKE_SUBMITTED.value
    PATIENT_FIELDS: ClassVar[tuple[str, ...]] = ("intake",)
    intake_id: uuid.UUID
    patient_id: uuid.UUID
    intake_version: int
    submitted_at: dt.datetime
    intake: IntakeBody


class IntakeAmended(IntakeSubmitted, frozen=True, kw_only=True):
    """A new version of an existing intake: the referral service re-triages it."""

    TYPE: ClassVar[str] = EventType.INTAKE_AMENDED.value


class ReferralCreated(Payload, frozen=True, kw_only=True):
    """Triage made a referral for an intake version (`supersedes` names the referral it replaces
    when an amendment re-triaged the intake)."""

    TYPE: ClassVar[str] = EventType.REFERRAL_CREATED.value
    referral_id: uuid.UUID
    intake_id: uuid.UUID
    intake_version: int
    destination: str
    priority: str
    status: str
    due_by: dt.datetime
    created_at: dt.datetime
    reason_codes: list[str]
    supersedes: uuid.UUID | None = None
    #: The reasons in words (`code`, `text`), in the order of `reason_codes`.
    reasons: list[dict[str, str]] = []


class ReferralStatusChanged(Payload, frozen=True, kw_only=True):
    """A referral moved (accepted, declined, scheduled, completed, no-show, cancelled, resolved,
    or superseded by a newer referral: `superseded_by`)."""

    TYPE: ClassVar[str] = EventType.REFERRAL_STATUS_CHANGED.value
    referral_id: uuid.UUID
    intake_id: uuid.UUID
    destination: str
    priority: str
    status: str
    previous_status: str
    changed_at: dt.datetime
    changed_by: str
    due_by: dt.datetime | None = None
    superseded_by: uuid.UUID | None = None
    #: The key's (or staff account's) id beside `changed_by`; null for triage itself.
    changed_by_id: uuid.UUID | None = None


class ReferralAmended(Payload, frozen=True, kw_only=True):
    """An amendment was re-triaged against an open referral, and what the amendment policy did:
    `updated` (same outcome, reasons brought up to date), `held` (an AMEND-HOLD clinician review,
    `hold_id`, waits beside the open referral, or the open hold itself took it) or `superseded`
    (a more urgent outcome replaced it at once: `superseded_by`). `destination` and `priority`
    are the open referral's; `proposed_*` the amended form's outcome. `resolved_by` names the
    clinician whose resolve the amendment met (the one to tell), if any."""

    TYPE: ClassVar[str] = EventType.REFERRAL_AMENDED.value
    referral_id: uuid.UUID
    intake_id: uuid.UUID
    intake_version: int
    action: str
    destination: str
    priority: str
    proposed_destination: str
    proposed_priority: str
    reason_codes: list[str]
    amended_at: dt.datetime
    hold_id: uuid.UUID | None = None
    superseded_by: uuid.UUID | None = None
    resolved_by: str | None = None
    after_resolve: bool = False


class ReferralFollowUpDue(Payload, frozen=True, kw_only=True):
    """A follow-up of a completed referral has reached its day (`due_on`)."""

    TYPE: ClassVar[str] = EventType.REFERRAL_FOLLOW_UP_DUE.value
    referral_id: uuid.UUID
    intake_id: uuid.UUID
    follow_up_id: uuid.UUID
    destination: str
    due_on: dt.date


PAYLOAD_TYPES: dict[str, type[Payload]] = {
    t.TYPE: t
    for t in (
        IntakeSubmitted,
        IntakeAmended,
        ReferralCreated,
        ReferralStatusChanged,
        ReferralAmended,
        ReferralFollowUpDue,
    )
}

#: The event types that carry patient data, and those fields: what the queue's upkeep drops from
#: an event every consumer has handled.
PATIENT_FIELDS: dict[str, tuple[str, ...]] = {
    t: p.PATIENT_FIELDS for t, p in PAYLOAD_TYPES.items() if p.PATIENT_FIELDS
}

#: Every consumer and the event types it subscribes to. `clinic migrate` writes these into the
#: queue's subscription table, so an event published before a consumer first starts still reaches it.
CONSUMERS: dict[str, tuple[str, ...]] = {
    ConsumerName.REFERRAL_TRIAGE: (IntakeSubmitted.TYPE, IntakeAmended.TYPE),
    ConsumerName.INTAKE_REFERRAL_MIRROR: (ReferralCreated.TYPE, ReferralStatusChanged.TYPE),
    ConsumerName.REFERRAL_WEBHOOKS: (
        IntakeSubmitted.TYPE,
        ReferralCreated.TYPE,
        ReferralStatusChanged.TYPE,
        ReferralAmended.TYPE,
        ReferralFollowUpDue.TYPE,
    ),
}


#: Consumers that have use for only some of their event types at a time, and the query naming
#: the types they want now. Publish writes them deliveries of those types only; `refresh_demand`
#: (run by `clinic migrate` and wherever the answer changes) keeps the subscriptions in step.
DEMAND: dict[str, str] = {
    # The webhook consumer: the types some enabled (and not deleted) endpoint subscribes to.
    "referral.webhooks": "SELECT DISTINCT unnest(event_types) FROM referral.webhook_endpoints "
    "WHERE disabled_at IS NULL AND deleted_at IS NULL",
}


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    type: str
    version: int
    occurred_at: dt.datetime
    subject: uuid.UUID
    data: dict[str, Any]

    def payload(self) -> Payload:
        """The typed payload; raises if the type is unknown or the data does not fit it."""
        return msgspec.convert(self.data, PAYLOAD_TYPES[self.type], strict=False)
