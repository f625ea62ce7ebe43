"""Staff accounts: people who sign in to the pages (API keys stay for integrations). Creating,
listing, disabling and resetting them; passwords are `passwords`' business, signing in
`staff_sessions`'."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.auth import KeyError_, Role
from services.common.access.models import SignInSession, User
from services.common.access.passwords import HASHER, temporary_password


class AccountError(ValueError):
    """A request about an account that cannot be done (bad role, weak password, unknown email)."""


def _normal_email(email: str) -> str:
    email = email.strip()
    if not 3 <= len(email) <= 320 or "@" not in email:
        raise AccountError("email must be an address like name@clinic.example")
    return email


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
        password_hash=HASHER.hash(password),
        must_change_password=True,
        created_at=now,
    )
    session.add(user)
    await session.flush()
    return password, user


async def list_users(session: AsyncSession) -> list[User]:
    return list((await session.execute(select(User).order_by(User.created_at))).scalars())


async def end_sessions(session: AsyncSession, user_id: uuid.UUID, now: dt.datetime) -> None:
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
    await end_sessions(session, user.id, now)
    return user


async def reset_user(session: AsyncSession, email: str, now: dt.datetime) -> tuple[str, User]:
    """A new temporary password (to change at the next sign-in); the account is enabled again and
    its sessions end."""
    user = await user_by_email(session, email)
    if user is None:
        raise AccountError(f"no account with the email {email}")
    password = temporary_password()
    user.password_hash = HASHER.hash(password)
    user.must_change_password = True
    user.disabled_at = None
    await end_sessions(session, user.id, now)
    return password, user
