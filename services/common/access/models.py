"""The access schema's tables (`access.*`): API keys, staff accounts with their sessions and
sign-in record, and the append-only access audit. Migrations: `migrations/access`."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    String,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db.engine import AccessBase


class ApiKey(AccessBase):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    destination: Mapped[str | None] = mapped_column(String(40))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: After this the key is refused like a revoked one (null: it does not expire).
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class User(AccessBase):
    __tablename__ = "users"
    __table_args__ = (Index("uq_users_email", func.lower(text("email")), unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(20))
    destination: Mapped[str | None] = mapped_column(String(40))
    password_hash: Mapped[str] = mapped_column(String(200))
    must_change_password: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class SignInSession(AccessBase):
    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_user_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("access.users.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class SignInEvent(AccessBase):
    """Append-only (a trigger refuses UPDATE and DELETE)."""

    __tablename__ = "sign_in_events"
    __table_args__ = (
        Index("ix_sign_in_events_email_at", "email", "at"),
        Index("ix_sign_in_events_client_address_at", "client_address", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    email: Mapped[str] = mapped_column(String(320))
    #: sign_in, sign_out, password_change, expired
    action: Mapped[str] = mapped_column(String(30))
    #: ok, bad_password, unknown_account, disabled, throttled
    outcome: Mapped[str] = mapped_column(String(30))
    client_address: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))


class AuditEvent(AccessBase):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at_id", "at", "id"),
        Index("ix_audit_events_patient_ids", "patient_ids", postgresql_using="gin"),
        Index("ix_audit_events_actor_name", "actor_name"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, server_default=text("gen_random_uuid()"))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    service: Mapped[str] = mapped_column(String(20))
    #: The key's (or staff account's) id; null for an unauthenticated caller or the command line.
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    actor_name: Mapped[str] = mapped_column(String(100))
    actor_role: Mapped[str | None] = mapped_column(String(20))
    #: `key`, `account`, `cli` or `anonymous`.
    actor_kind: Mapped[str] = mapped_column(String(12))
    action: Mapped[str] = mapped_column(String(80))
    method: Mapped[str | None] = mapped_column(String(10))
    path: Mapped[str | None] = mapped_column(String(300))
    resource_type: Mapped[str | None] = mapped_column(String(40))
    resource_id: Mapped[str | None] = mapped_column(String(200))
    patient_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid), server_default=text("'{}'"))
    request_id: Mapped[str | None] = mapped_column(String(64))
    #: `ok` (read answered or write committed), `denied` (401/403), `rejected` (another 4xx),
    #: `failed` (5xx).
    outcome: Mapped[str] = mapped_column(String(12))
    status: Mapped[int | None] = mapped_column(SmallInteger)
    #: Administrative changes: `[{"table", "id", "before", "after"}]`, secrets left out.
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
