"""API keys and the one role guard both services use.

A key is shown once, at creation; only its SHA-256 digest is stored. Keys are long random
tokens, so a fast digest is enough: there is nothing to brute-force that a slow hash protects.

A request costs no key lookup while its key is in the process's `KeyCache` (both answers, valid
and not, are kept `CLINIC_API_KEY_CACHE_SECONDS`, default 5 s): a revoked key keeps working for
at most that long in each process. A lookup is one short statement on a pooled connection, not a
session, and the guard is a coroutine: no thread hop per request.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import Guard
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from services.common.access.models import ApiKey, AuditEvent
from services.common.contracts.vocabulary import Role as Role
from services.common.contracts.vocabulary import SpecialistDestination

#: The destinations a specialist's key may be for (their home is `services.common.contracts.vocabulary`).
Destination = SpecialistDestination

KEY_PREFIX = "clk_"


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


def check_role_destination(role: str, destination: str | None) -> tuple[Role, str | None]:
    """A role, and the destination a specialist (and only a specialist) is bound to; for keys and
    staff accounts alike."""
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
    return role_, destination


#: Names the system records as the author of its own acts: a key may not pass for them.
RESERVED_NAMES = frozenset({"triage", "system", "anonymous"})
RESERVED_PREFIXES = ("inbound:", "cli:", "system:")


def is_reserved_name(name: str) -> bool:
    lowered = name.strip().lower()
    return lowered in RESERVED_NAMES or lowered.startswith(RESERVED_PREFIXES)


async def create_api_key(
    session: AsyncSession,
    *,
    role: str,
    name: str,
    destination: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[str, ApiKey]:
    """Store a new key's hash; return the key itself (shown once) and its row."""
    role_, destination = check_role_destination(role, destination)
    name = name.strip()
    if not name or len(name) > 100:
        raise KeyError_("name must be 1-100 characters")
    if is_reserved_name(name):
        raise KeyError_(f"the name {name!r} is the system's own (triage, inbound:*, system): choose another")
    if (await session.execute(select(ApiKey.id).where(func.lower(ApiKey.name) == name.lower()))).first():
        raise KeyError_(
            f"a key named {name!r} exists already (revoked keys keep their names): choose another"
        )
    key = new_key()
    row = ApiKey(
        name=name, role=role_.value, destination=destination, key_hash=hash_key(key), expires_at=expires_at
    )
    session.add(row)
    await session.flush()
    return key, row


_KEYS = ApiKey.__table__.c
_LOOKUP = select(_KEYS.id, _KEYS.name, _KEYS.role, _KEYS.destination).where(
    _KEYS.revoked_at.is_(None), or_(_KEYS.expires_at.is_(None), _KEYS.expires_at > func.now())
)


async def principal_for_key(conn: AsyncSession | AsyncConnection, key: str) -> Principal | None:
    """The holder of a valid (unrevoked) key; None for any other key."""
    row = (await conn.execute(_LOOKUP.where(_KEYS.key_hash == hash_key(key)))).first()
    if row is None:
        return None
    return Principal(
        key_id=row.id,
        name=row.name,
        role=Role(row.role),
        destination=Destination(row.destination) if row.destination else None,
    )


@dataclass
class KeyCache:
    """Recent key lookups of one process, valid or not, each trusted for `ttl_seconds`.

    Bounded: past `max_entries` it starts afresh (an attacker sending random keys only costs
    lookups). `clock` is monotonic seconds (tests give a fake one)."""

    ttl_seconds: float
    max_entries: int = 10_000
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, tuple[float, Principal | None]] = field(default_factory=dict)

    def known(self, key: str) -> Principal | None:
        """The holder of `key` if a lookup within `ttl_seconds` found it valid; None otherwise,
        without a lookup (a fast lane takes only keys seen recently)."""
        hit = self._entries.get(hash_key(key))
        return hit[1] if hit is not None and hit[0] > self.clock() else None

    async def principal(self, engine: AsyncEngine, key: str) -> Principal | None:
        digest = hash_key(key)
        now = self.clock()
        hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with engine.connect() as conn:
            principal = await principal_for_key(conn, key)
        if self.ttl_seconds > 0:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[digest] = (now + self.ttl_seconds, principal)
        return principal


@dataclass(frozen=True, slots=True)
class KeyListing:
    """A key as `clinic keys list` shows it (never the key or its digest)."""

    id: uuid.UUID
    name: str
    role: str
    destination: str | None
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


async def list_api_keys(session: AsyncSession) -> list[KeyListing]:
    """Every key, oldest first; last used is the latest access the audit recorded for it."""
    last_used = select(func.max(AuditEvent.at)).where(AuditEvent.actor_id == ApiKey.id).scalar_subquery()
    query = select(ApiKey, last_used).order_by(ApiKey.created_at, ApiKey.name)
    return [
        KeyListing(
            id=key.id,
            name=key.name,
            role=key.role,
            destination=key.destination,
            created_at=key.created_at,
            last_used_at=used,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
        )
        for key, used in (await session.execute(query)).all()
    ]


async def revoke_api_key(session: AsyncSession, name: str) -> int:
    rows = (
        (await session.execute(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))))
        .scalars()
        .all()
    )
    for row in rows:
        row.revoked_at = datetime.now(UTC)
    return len(rows)


def bearer_token(authorization: str) -> str | None:
    """The key in an `Authorization: Bearer <key>` header's value (None: no bearer key)."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def admitted_roles(*roles: Role) -> frozenset[Role]:
    """The roles a route given `roles` admits: those, and admin always."""
    return frozenset(roles) | {Role.admin}


class ApiKeyMiddleware(AbstractAuthenticationMiddleware):
    """`Authorization: Bearer <key>`; anything else on a protected route is a 401."""

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:  # type: ignore[type-arg]
        token = bearer_token(connection.headers.get("authorization", ""))
        if token is None:
            raise NotAuthorizedException("An API key is required: Authorization: Bearer <key>.")
        state = connection.app.state
        cache: KeyCache = state["clinic_key_cache"]
        principal = await cache.principal(state["clinic_engine"], token)
        if principal is None:
            raise NotAuthorizedException("The API key is not valid or has been revoked.")
        return AuthenticationResult(user=principal, auth=token)


def require_roles(*roles: Role) -> Guard:
    """A guard admitting only the given roles (admin is always admitted)."""
    allowed = admitted_roles(*roles)

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
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
