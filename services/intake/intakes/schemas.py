"""What the intake API returns. The request body is `IntakeBody` (services/common/contracts/intake_body.py),
shared with the referral service so both read the form the same way."""

from __future__ import annotations

import datetime as dt
import enum
import uuid

import msgspec

from services.common.contracts.intake_body import IntakeBody


class IntakeStatus(enum.StrEnum):
    SUBMITTED = "submitted"
    ROUTED = "routed"


class ReferralSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Where the referral service sent the intake, kept current by its events."""

    id: uuid.UUID
    destination: str
    priority: str
    status: str
    #: The intake version the referral was triaged from (an amendment may route anew).
    intake_version: int | None = None


class Intake(IntakeBody, frozen=True, kw_only=True):
    """The intake as submitted (at `version`), plus what the clinic knows of it now.

    `submitted_at`/`submitted_by` are the first submission's; `amended_at`/`amended_by` are the
    latest version's (null for version 1). `status` and `referral` are current, whichever version
    is shown."""

    id: uuid.UUID
    patient_id: uuid.UUID
    status: IntakeStatus
    version: int
    submitted_at: dt.datetime
    submitted_by: str
    amended_at: dt.datetime | None = None
    amended_by: str | None = None
    referral: ReferralSummary | None = None


class IntakePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Intake]
    next_cursor: str | None


class PatientOut(msgspec.Struct, frozen=True, kw_only=True):
    """A patient as the clinic knows them now."""

    id: uuid.UUID
    mrn: str | None
    given_name: str
    family_name: str
    birth_date: dt.date
    sex: str
    phone: str | None = None
    email: str | None = None


class PatientPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[PatientOut]
    next_cursor: str | None
