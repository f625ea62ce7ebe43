"""Staff sign-in: sessions, the person a session cookie belongs to, sign-out and password change.

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

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.accounts import AccountError, user_by_email
from services.common.access.audit import audit_service
from services.common.access.auth import Destination, Role
from services.common.access.models import AuditEvent, SignInEvent, SignInSession, User
from services.common.access.passwords import DUMMY_HASH, HASHER, password_problem, verify_password
from services.common.settings import Settings

log = structlog.get_logger(__name__)

#: Failed sign-ins allowed in `THROTTLE_WINDOW` per account and (more) per client address.
THROTTLE_WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20


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
        verify_password(DUMMY_HASH, password)
        outcome, user_id = "unknown_account", None
    elif not verify_password(user.password_hash, password):
        outcome, user_id = "bad_password", user.id
    elif user.disabled_at is not None:
        outcome, user_id = "disabled", user.id
    else:
        outcome, user_id = "ok", user.id
    await record_event(session, attempt, email=email, action="sign_in", outcome=outcome, user_id=user_id)
    if outcome != "ok" or user is None:
        raise SignInRefused("The email or the password is not right.")
    if HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = HASHER.hash(password)
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
    if not verify_password(user.password_hash, current):
        raise AccountError("The current password is not right.")
    if new == current:
        raise AccountError("Choose a password different from the current one.")
    if (problem := password_problem(new)) is not None:
        raise AccountError(problem)
    user.password_hash = HASHER.hash(new)
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
