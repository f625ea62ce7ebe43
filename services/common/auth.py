"""API keys and the one role guard both services use.

A key is shown once, at creation; only its SHA-256 digest is stored. Keys are long random
tokens, so a fast digest is enough: there is nothing to brute-force that a slow hash protects.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import Guard
from sqlalchemy import DateTime, String, Uuid, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import AccessBase
from services.common.vocabulary import SpecialistDestination

#: The destinations a specialist's key may be for (their home is `services.common.vocabulary`).
Destination = SpecialistDestination

KEY_PREFIX = "clk_"


class Role(enum.StrEnum):
    front_desk = "front_desk"
    specialist = "specialist"
    clinician = "clinician"
    admin = "admin"


class ApiKey(AccessBase):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    destination: Mapped[str | None] = mapped_column(String(40))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's name is what history and audit lines record."""

    key_id: uuid.UUID
    name: str
    role: Role
    destination: Destination | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyError_(ValueError):
    """A key request that makes no sense (a specialist with no destination, say)."""


async def create_api_key(
    session: AsyncSession, *, role: str, name: str, destination: str | None = None
) -> tuple[str, ApiKey]:
    """Store a new key's hash; return the key itself (shown once) and its row."""
    try:
        role_ = Role(role)
    except ValueError as exc:
        raise KeyError_(f"role must be one of {', '.join(r.value for r in Role)}") from exc
    if role_ is Role.specialist:
        if destination is None:
            raise KeyError_("a specialist key needs --destination")
        try:
            destination = Destination(destination).value
        except ValueError as exc:
            allowed = ", ".join(d.value for d in Destination)
            raise KeyError_(f"destination must be one of {allowed}") from exc
    elif destination is not None:
        raise KeyError_("only specialist keys are bound to a destination")
    name = name.strip()
    if not name or len(name) > 100:
        raise KeyError_("name must be 1-100 characters")
    key = new_key()
    row = ApiKey(name=name, role=role_.value, destination=destination, key_hash=hash_key(key))
    session.add(row)
    await session.flush()
    return key, row


async def principal_for_key(session: AsyncSession, key: str) -> Principal | None:
    row = (
        await session.execute(
            select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    return Principal(
        key_id=row.id,
        name=row.name,
        role=Role(row.role),
        destination=Destination(row.destination) if row.destination else None,
    )


async def revoke_api_key(session: AsyncSession, name: str) -> int:
    rows = (
        (await session.execute(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))))
        .scalars()
        .all()
    )
    for row in rows:
        row.revoked_at = datetime.now(UTC)
    return len(rows)


class ApiKeyMiddleware(AbstractAuthenticationMiddleware):
    """`Authorization: Bearer <key>`; anything else on a protected route is a 401."""

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:  # type: ignore[type-arg]
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthorizedException("An API key is required: Authorization: Bearer <key>.")
        maker: async_sessionmaker[AsyncSession] = connection.app.state["clinic_sessionmaker"]
        async with maker() as session:
            principal = await principal_for_key(session, token.strip())
        if principal is None:
            raise NotAuthorizedException("The API key is not valid or has been revoked.")
        return AuthenticationResult(user=principal, auth=token)


def require_roles(*roles: Role) -> Guard:
    """A guard admitting only the given roles (admin is always admitted)."""
    allowed = frozenset(roles) | {Role.admin}

    def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
        # The auth middleware skips OPTIONS and HEAD; a guarded route then has no user: a 401,
        # never a 500.
        principal = connection.scope.get("user")
        if principal is None:
            raise NotAuthorizedException("An API key is required: Authorization: Bearer <key>.")
        if not isinstance(principal, Principal) or principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise PermissionDeniedException(f"This action needs one of the roles: {names}.")

    return guard


def principal_of(connection: ASGIConnection) -> Principal:  # type: ignore[type-arg]
    """The caller of a guarded route (the guard has already refused anyone else)."""
    user = connection.user
    assert isinstance(user, Principal)
    return user
