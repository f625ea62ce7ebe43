"""What the referral API returns and accepts (msgspec structs at the HTTP edge)."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec


class PatientSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    given_name: str
    family_name: str
    birth_date: dt.date
    mrn: str | None = None


class ReasonOut(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    text: str
    source: str


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    at: dt.datetime
    by: str
    note: str | None = None


class FollowUpOut(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    referral_id: uuid.UUID
    due_on: dt.date
    #: `scheduled`, then `due` (and `referral.follow_up_due` emitted) on its day, then `done`.
    status: str
    emitted_at: dt.datetime | None = None
    done_at: dt.datetime | None = None
    done_by: str | None = None


class ReferralOut(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    intake_id: uuid.UUID
    intake_version: int
    patient: PatientSnapshot
    destination: str
    priority: str
    status: str
    reasons: list[ReasonOut]
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


class ReferralPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ReferralOut]
    next_cursor: str | None
