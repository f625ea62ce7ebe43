"""Tables of the `referral` schema that the referrals themselves use (webhooks keep theirs)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from services.common.db.engine import schema_metadata


class ReferralBase(DeclarativeBase):
    metadata = schema_metadata("referral")


class Referral(ReferralBase):
    __tablename__ = "referrals"
    __table_args__ = (
        # A specialist's worklist: their destination and status, most pressing first.
        Index("ix_referrals_worklist", "destination", "status", "priority_rank", "due_by", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    intake_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    intake_version: Mapped[int] = mapped_column(Integer)
    #: Minimum necessary for the specialist: names, birth date, MRN (never contacts or notes).
    patient: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: The clinical picture of `intake_version` for its destination and clinicians (see
    #: `clinical_picture`); None on referrals made before it was kept.
    clinical: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    destination: Mapped[str] = mapped_column(String(40))
    priority: Mapped[str] = mapped_column(String(10))
    priority_rank: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    reasons: Mapped[list[dict[str, str]]] = mapped_column(JSONB)
    ruleset_version: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    due_by: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    accepted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    scheduled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    appointment_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    close_reason: Mapped[str | None] = mapped_column(Text)
    supersedes: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("referral.referrals.id"))
    superseded_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("referral.referrals.id"))
    #: On an AMEND-HOLD clinician review: the open referral whose amendment it holds.
    amendment_of: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("referral.referrals.id"))

    history: Mapped[list[ReferralHistory]] = relationship(
        order_by="ReferralHistory.id", lazy="selectin", cascade="all, delete-orphan"
    )
    follow_ups: Mapped[list[FollowUp]] = relationship(
        order_by="FollowUp.due_on", lazy="selectin", cascade="all, delete-orphan"
    )


class ReferralHistory(ReferralBase):
    __tablename__ = "referral_history"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    referral_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("referral.referrals.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(20))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    by: Mapped[str] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(Text)


class FollowUp(ReferralBase):
    __tablename__ = "follow_ups"
    __table_args__ = (
        UniqueConstraint("referral_id", "due_on"),
        # The scheduler's scan: follow-ups still waiting for their day.
        Index("ix_follow_ups_scheduled", "due_on", postgresql_where=text("status = 'scheduled'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    referral_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("referral.referrals.id", ondelete="CASCADE"))
    due_on: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20))
    emitted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    done_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    done_by: Mapped[str | None] = mapped_column(String(100))
