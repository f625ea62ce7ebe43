"""Tables of the `intake` schema. Only the intake service reads or writes them.

- `patients` holds each patient's current demographics; `patient_changes` keeps the values an
  intake replaced, so a correction at the front desk never loses what was recorded before.
- `intakes` is one row per intake with its current version, status and the mirrored referral
  summary; `intake_versions` keeps every submitted body as it was sent (earlier versions stay
  readable after an amendment).
- `referral_mirror` is one row per referral the referral service told us about, kept monotonic
  by event time; the intake's summary columns are derived from it.
- `idempotency_keys` remembers, per caller, the first response to a keyed request (and the
  `webhook-id`s of inbound form webhooks), until it expires.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Date, DateTime, ForeignKey, Identity, Index, Integer, String, Text, Uuid, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db.engine import schema_metadata


class IntakeBase(DeclarativeBase):
    metadata = schema_metadata("intake")


class Patient(IntakeBase):
    __tablename__ = "patients"
    __table_args__ = (
        Index(
            "ix_patients_names_birth_date",
            func.lower(text("family_name")),
            func.lower(text("given_name")),
            "birth_date",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    mrn: Mapped[str | None] = mapped_column(String(64), unique=True)
    given_name: Mapped[str] = mapped_column(String(200))
    family_name: Mapped[str] = mapped_column(String(200))
    birth_date: Mapped[dt.date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(20))
    phone: Mapped[str | None] = mapped_column(String(50))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class PatientChange(IntakeBase):
    __tablename__ = "patient_changes"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("intake.patients.id"), index=True)
    intake_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    changed_by: Mapped[str] = mapped_column(String(100))
    #: The replaced values only, by field name (JSON: dates as ISO strings).
    previous: Mapped[dict[str, Any]] = mapped_column(JSONB)


class Intake(IntakeBase):
    __tablename__ = "intakes"
    # The list pages newest first, optionally by status; MRN filters go through patients.
    __table_args__ = (
        Index("ix_intakes_submitted", "submitted_at", "id"),
        Index("ix_intakes_status_submitted", "status", "submitted_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("intake.patients.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20))
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    submitted_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    referral_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    referral_destination: Mapped[str | None] = mapped_column(String(40))
    referral_priority: Mapped[str | None] = mapped_column(String(20))
    referral_status: Mapped[str | None] = mapped_column(String(20))
    referral_intake_version: Mapped[int | None] = mapped_column(Integer)


class IntakeVersion(IntakeBase):
    __tablename__ = "intake_versions"

    intake_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("intake.intakes.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("intake.patients.id"))
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    submitted_by: Mapped[str] = mapped_column(String(100))
    #: The body exactly as validated (`IntakeBody` encoded by msgspec).
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: Why an amendment was made, as the front desk gave it (None for version 1 and the API's).
    change_reason: Mapped[str | None] = mapped_column(Text)


class ReferralMirror(IntakeBase):
    __tablename__ = "referral_mirror"

    referral_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    intake_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    destination: Mapped[str] = mapped_column(String(40))
    priority: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    #: When the status above was true at the referral service: later events win, earlier ones
    #: arriving late change nothing.
    status_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    intake_version: Mapped[int | None] = mapped_column(Integer)
    supersedes: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    superseded_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    due_by: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: The triage reasons ({code, text}), in plain words, deciding one first.
    reasons: Mapped[list[dict[str, str]] | None] = mapped_column(JSONB)


class IdempotencyKey(IntakeBase):
    __tablename__ = "idempotency_keys"

    #: Whose key it is: `key:<api key id>`, or `inbound` for form webhooks' `webhook-id`s.
    scope: Mapped[str] = mapped_column(String(80), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    #: The first response (status and JSON text, byte for byte); written in the same transaction
    #: as the row itself, so no other transaction ever sees them empty.
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
