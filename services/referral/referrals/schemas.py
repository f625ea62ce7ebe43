"""What the referral API returns and accepts (msgspec structs at the HTTP edge)."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from services.common.contracts.intake_body import (
    Complaint,
    Condition,
    Email,
    Notes,
    Phone,
    RedFlags,
    RegenerativeProcedure,
    RiskFactor,
    Sex,
    Symptom,
    TreatmentTried,
)
from services.referral.triage.engine import Reason


class PatientSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    given_name: str
    family_name: str
    birth_date: dt.date
    mrn: str | None = None


class Contact(msgspec.Struct, frozen=True, kw_only=True):
    """What a specialist needs to book the patient."""

    sex: Sex = Sex.UNKNOWN
    phone: Phone | None = None
    email: Email | None = None


class ClinicalPicture(msgspec.Struct, frozen=True, kw_only=True):
    """The intake version's facts a specialist or clinician decides on (the intake's own
    vocabulary): shown to the referral's destination, clinicians and admins, never to the front
    desk through the referral service."""

    contact: Contact
    complaint: Complaint
    red_flags: RedFlags
    symptoms: list[Symptom] = []
    conditions: list[Condition] = []
    risk_factors: list[RiskFactor] = []
    treatments_tried: list[TreatmentTried] = []
    regenerative_procedure: RegenerativeProcedure | None = None
    notes: Notes | None = None


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    at: dt.datetime
    by: str
    note: str | None = None
    #: The acting key's (or staff account's) id beside its name; null for triage itself (`by`
    #: is `triage`) and for entries recorded before ids were kept.
    by_id: uuid.UUID | None = None


class FollowUpOut(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    referral_id: uuid.UUID
    due_on: dt.date
    #: `scheduled`, then `due` (and `referral.follow_up_due` emitted) on its day, then `done`.
    status: str
    emitted_at: dt.datetime | None = None
    done_at: dt.datetime | None = None
    done_by: str | None = None
    #: The id of the key (or staff account) that marked it done.
    done_by_id: uuid.UUID | None = None


class ReferralOut(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    intake_id: uuid.UUID
    intake_version: int
    patient: PatientSnapshot
    destination: str
    priority: str
    status: str
    reasons: list[Reason]
    ruleset_version: str
    created_at: dt.datetime
    updated_at: dt.datetime
    due_by: dt.datetime
    overdue: bool
    appointment_at: dt.datetime | None
    close_reason: str | None
    history: list[HistoryEntry]
    supersedes: uuid.UUID | None
    superseded_by: uuid.UUID | None
    follow_ups: list[FollowUpOut]
    allowed_actions: list[str]
    amendment_of: uuid.UUID | None = None
    """On an AMEND-HOLD review: the open referral whose amendment it holds (resolve to replace
    it, cancel to keep it)."""
    clinical: ClinicalPicture | None = None
    """The clinical picture of `intake_version`: in `GET /v1/referrals/{id}` for its specialist,
    clinicians and admins; absent for the front desk, in lists and in the actions' answers."""


class ReferralPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ReferralOut]
    next_cursor: str | None
