"""What the follow-ups worklist returns."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from services.referral.referrals.schemas import PatientSnapshot


class FollowUpItem(msgspec.Struct, frozen=True, kw_only=True):
    """One follow-up, with what a specialist needs to act on it without opening the referral."""

    id: uuid.UUID
    referral_id: uuid.UUID
    intake_id: uuid.UUID
    destination: str
    patient: PatientSnapshot
    due_on: dt.date
    #: `scheduled`; `due` once its day has come (and `referral.follow_up_due` was emitted); `done`.
    status: str
    emitted_at: dt.datetime | None
    done_at: dt.datetime | None
    done_by: str | None
    #: The id of the key (or staff account) that marked it done, beside its name.
    done_by_id: uuid.UUID | None = None


class FollowUpPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[FollowUpItem]
    next_cursor: str | None
