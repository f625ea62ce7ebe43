"""Staff accounts: people who sign in to the pages (API keys stay for integrations).

- Passwords are hashed with Argon2id; at least 12 characters, and not one of the common passwords
  shipped in `common-passwords.txt`. A new or reset account gets a temporary password that must be
  changed at the first sign-in.
- Sessions are rows in `access.sessions`, keyed by the SHA-256 of the cookie's random token, so
  both services accept the same sign-in and a sign-out (or a disabled account) ends it at once.
  A session ends after `session_idle_minutes` without a request and `session_max_hours` after
  the sign-in, whichever comes first.
- Every sign-in, failure and sign-out is appended to `access.sign_in_events` (when, who, action,
  outcome, client address, request id); failed attempts there also drive the throttle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from functools import cache
from importlib import resources

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    String,
    Uuid,
    func,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.common.access.audit import AuditEvent, audit_service
from services.common.access.auth import Destination, KeyError_, Role
from services.common.db.engine import AccessBase
from services.common.settings import Settings

log = structlog.get_logger(__name__)

MIN_PASSWORD_LENGTH = 12
#: Failed sign-ins allowed in `THROTTLE_WINDOW` per account and (more) per client address.
THROTTLE_WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20

_HASHER = PasswordHasher()  # Argon2id with the library's current parameters
#: Verified against when the email is unknown, so timing does not tell which emails exist.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


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


@dataclass(frozen=True, slots=True)
class StaffMember:
    """The signed-in person, as pages see them."""

    user_id: uuid.UUID
    name: str
    email: str
    role: Role
    destination: Destination | None
    must_change_password: bool
    session_id: str


class AccountError(ValueError):
    """A request about an account that cannot be done (bad role, weak password, unknown email)."""


# -- passwords -----------------------------------------------------------------------------------


@cache
def common_passwords() -> frozenset[str]:
    text = (
        resources.files("services.common.access").joinpath("common-passwords.txt").read_text(encoding="utf-8")
    )
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def password_problem(password: str) -> str | None:
    """Why a new password is refused, in words for the person choosing it; None if acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if password.lower() in common_passwords() or len(set(password)) < 4:
        return "This password is too common or too easy to guess; choose another."
    return None


def temporary_password() -> str:
    return secrets.token_urlsafe(12)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _normal_email(email: str) -> str:
    email = email.strip()
    if not 3 <= len(email) <= 320 or "@" not in email:
        raise AccountError("email must be an address like name@clinic.example")
    return email


# -- accounts ------------------------------------------------------------------------------------


def _role_and_destination(role: str, destination: str | None) -> tuple[Role, str | None]:
    from services.common.access.auth import check_role_destination

    try:
        return check_role_destination(role, destination)
    except KeyError_ as exc:
        raise AccountError(str(exc).replace("key", "account")) from exc


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return (
        await session.execute(select(User).where(func.lower(User.email) == email.strip().lower()))
    ).scalar_one_or_none()


async def create_user(
    session: AsyncSession, *, role: str, name: str, email: str, destination: str | None, now: dt.datetime
) -> tuple[str, User]:
    """A new account with a temporary password (returned, shown once)."""
    role_, destination = _role_and_destination(role, destination)
    name = name.strip()
    if not name or len(name) > 100:
        raise AccountError("name must be 1-100 characters")
    email = _normal_email(email)
    if await user_by_email(session, email) is not None:
        raise AccountError(f"an account with the email {email} already exists")
    password = temporary_password()
    user = User(
        id=uuid.uuid4(),
        name=name,
        email=email,
        role=role_.value,
        destination=destination,
        password_hash=_HASHER.hash(password),
        must_change_password=True,
        created_at=now,
    )
    session.add(user)
    await session.flush()
    return password, user


async def list_users(session: AsyncSession) -> list[User]:
    return list((await session.execute(select(User).order_by(User.created_at))).scalars())


async def _end_sessions(session: AsyncSession, user_id: uuid.UUID, now: dt.datetime) -> None:
    await session.execute(
        update(SignInSession)
        .where(SignInSession.user_id == user_id, SignInSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def disable_user(session: AsyncSession, email: str, now: dt.datetime) -> User:
    """Disable the account and end every session it has, on both services at once."""
    user = await user_by_email(session, email)
    if user is None:
        raise AccountError(f"no account with the email {email}")
    if user.disabled_at is None:
        user.disabled_at = now
    await _end_sessions(session, user.id, now)
    return user


async def reset_user(session: AsyncSession, email: str, now: dt.datetime) -> tuple[str, User]:
    """A new temporary password (to change at the next sign-in); the account is enabled again and
    its sessions end."""
    user = await user_by_email(session, email)
    if user is None:
        raise AccountError(f"no account with the email {email}")
    password = temporary_password()
    user.password_hash = _HASHER.hash(password)
    user.must_change_password = True
    user.disabled_at = None
    await _end_sessions(session, user.id, now)
    return password, user


# -- sign-in, sessions, sign-out -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """Where a request came from, for the record."""

    client_address: str | None
    request_id: str | None
    at: dt.datetime


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def record_event(
    session: AsyncSession,
    attempt: Attempt,
    *,
    email: str,
    action: str,
    outcome: str,
    user_id: uuid.UUID | None,
) -> None:
    session.add(
        SignInEvent(
            at=attempt.at,
            user_id=user_id,
            email=email[:320],
            action=action,
            outcome=outcome,
            client_address=attempt.client_address,
            request_id=attempt.request_id,
        )
    )
    # The access audit holds staff sign-ins beside every other access (same transaction).
    session.add(
        AuditEvent(
            at=attempt.at,
            service=audit_service(),
            actor_id=user_id,
            actor_name=email[:100],
            actor_role=None,
            actor_kind="account",
            action="staff." + action,
            resource_type="sessions",
            request_id=attempt.request_id,
            outcome="ok" if outcome == "ok" else "denied",
            detail={"outcome": outcome, "client_address": attempt.client_address},
        )
    )
    log.info("staff_" + action, outcome=outcome, user_id=str(user_id) if user_id else None)


async def _throttled(session: AsyncSession, email: str, attempt: Attempt) -> bool:
    since = attempt.at - THROTTLE_WINDOW
    failed = SignInEvent.outcome.in_(("bad_password", "unknown_account", "disabled", "throttled"))
    recent = select(func.count()).where(SignInEvent.action == "sign_in", failed, SignInEvent.at > since)
    by_account = (
        await session.execute(recent.where(func.lower(SignInEvent.email) == email.lower()))
    ).scalar_one()
    if by_account >= MAX_FAILURES_PER_ACCOUNT:
        return True
    if attempt.client_address is None:
        return False
    by_address = (
        await session.execute(recent.where(SignInEvent.client_address == attempt.client_address))
    ).scalar_one()
    return by_address >= MAX_FAILURES_PER_ADDRESS


class SignInRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def sign_in(
    session: AsyncSession, email: str, password: str, attempt: Attempt, settings: Settings
) -> str:
    """Check the password and open a session; return its token (for the cookie). Raises
    `SignInRefused` with words to show; every outcome is recorded. The caller commits."""
    email = email.strip()[:320]
    if await _throttled(session, email, attempt):
        await record_event(session, attempt, email=email, action="sign_in", outcome="throttled", user_id=None)
        raise SignInRefused("Too many failed sign-ins. Wait 15 minutes, or ask an administrator.")
    user = await user_by_email(session, email)
    if user is None:
        _verify(_DUMMY_HASH, password)
        outcome, user_id = "unknown_account", None
    elif not _verify(user.password_hash, password):
        outcome, user_id = "bad_password", user.id
    elif user.disabled_at is not None:
        outcome, user_id = "disabled", user.id
    else:
        outcome, user_id = "ok", user.id
    await record_event(session, attempt, email=email, action="sign_in", outcome=outcome, user_id=user_id)
    if outcome != "ok" or user is None:
        raise SignInRefused("The email or the password is not right.")
    if _HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = _HASHER.hash(password)
    token = secrets.token_urlsafe(32)
    session.add(
        SignInSession(
            id=_session_id(token),
            user_id=user.id,
            created_at=attempt.at,
            last_seen_at=attempt.at,
            expires_at=attempt.at + dt.timedelta(hours=settings.session_max_hours),
        )
    )
    await session.flush()
    return token


async def staff_for_token(
    session: AsyncSession, token: str, now: dt.datetime, settings: Settings, *, touch: bool = True
) -> StaffMember | None:
    """The person a session cookie belongs to, if the session is still open; marks it seen unless
    `touch` is false (a page's background refresh is not the person at the desk)."""
    idle = dt.timedelta(minutes=settings.session_idle_minutes)
    row = (
        await session.execute(
            select(SignInSession, User)
            .join(User, User.id == SignInSession.user_id)
            .where(
                SignInSession.id == _session_id(token),
                SignInSession.revoked_at.is_(None),
                SignInSession.expires_at > now,
                SignInSession.last_seen_at > now - idle,
                User.disabled_at.is_(None),
            )
        )
    ).first()
    if row is None:
        return None
    sess, user = row
    if touch:
        await session.execute(
            update(SignInSession).where(SignInSession.id == sess.id).values(last_seen_at=now)
        )
    return StaffMember(
        user_id=user.id,
        name=user.name,
        email=user.email,
        role=Role(user.role),
        destination=Destination(user.destination) if user.destination else None,
        must_change_password=user.must_change_password,
        session_id=sess.id,
    )


async def sign_out(session: AsyncSession, staff: StaffMember, attempt: Attempt) -> None:
    await session.execute(
        update(SignInSession).where(SignInSession.id == staff.session_id).values(revoked_at=attempt.at)
    )
    await record_event(
        session, attempt, email=staff.email, action="sign_out", outcome="ok", user_id=staff.user_id
    )


async def change_password(
    session: AsyncSession, staff: StaffMember, current: str, new: str, attempt: Attempt
) -> None:
    """Raises `AccountError` with words to show. Other sessions of the account end."""
    user = await session.get(User, staff.user_id)
    assert user is not None
    if not _verify(user.password_hash, current):
        raise AccountError("The current password is not right.")
    if new == current:
        raise AccountError("Choose a password different from the current one.")
    if (problem := password_problem(new)) is not None:
        raise AccountError(problem)
    user.password_hash = _HASHER.hash(new)
    user.must_change_password = False
    await session.execute(
        update(SignInSession)
        .where(
            SignInSession.user_id == user.id,
            SignInSession.id != staff.session_id,
            SignInSession.revoked_at.is_(None),
        )
        .values(revoked_at=attempt.at)
    )
    await record_event(
        session, attempt, email=user.email, action="password_change", outcome="ok", user_id=user.id
    )
