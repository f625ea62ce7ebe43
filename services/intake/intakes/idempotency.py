"""Idempotency keys: a request answered once, its replay answered from what was stored."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts.intake_body import IntakeBody
from services.common.errors import Conflict, FieldProblem, InvalidFields
from services.intake.db.models import IdempotencyKey
from services.intake.intakes.reads import get_intake


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """A request that must be answered once: `scope` is whose key it is (an API key, or the
    inbound form webhook), `key` the caller's key (`Idempotency-Key` or `webhook-id`)."""

    scope: str
    key: str
    request_hash: str
    ttl: dt.timedelta


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """An answer to a submission or amendment: `intake` is the intake version it shows."""

    status_code: int
    content: bytes
    intake_id: uuid.UUID
    version: int
    replayed: bool = False


def request_hash(method: str, path: str, body: IntakeBody) -> str:
    """Of the request's meaning, not its bytes: key order and whitespace do not make it another
    request, but another path (an amendment of another intake) does."""
    digest = hashlib.sha256(f"{method} {path}\n".encode())
    digest.update(msgspec.json.encode(body))
    return digest.hexdigest()


def check_idempotency_key(key: str | None, field: str = "Idempotency-Key") -> str | None:
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
        raise InvalidFields([FieldProblem(field=field, message="Use 1-255 printable ASCII characters.")])
    return key


async def claim_key(
    session: AsyncSession, claim: IdempotencyClaim, now: dt.datetime
) -> StoredResponse | None:
    """Take the key for this transaction, or return the first response if the key was used.

    The row is inserted first: a concurrent request with the same key waits on it until this
    transaction ends, then sees the committed response (or takes the key if this one rolled
    back). An expired row is taken over as if it did not exist.

    The row keeps no response body: a replay answers with the same status and the same intake
    version, read from the database now (as `GET /v1/intakes/{id}/versions/{n}` shows it: the
    version's form and the referral's current summary)."""
    table = IdempotencyKey.__table__
    stmt = pg_insert(IdempotencyKey).values(
        scope=claim.scope,
        key=claim.key,
        request_hash=claim.request_hash,
        created_at=now,
        expires_at=now + claim.ttl,
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=[table.c.scope, table.c.key],
        set_={
            "request_hash": stmt.excluded.request_hash,
            "status_code": None,
            "resource_id": None,
            "resource_version": None,
            "created_at": stmt.excluded.created_at,
            "expires_at": stmt.excluded.expires_at,
        },
        where=table.c.expires_at <= stmt.excluded.created_at,
    ).returning(table.c.key)
    if (await session.execute(upsert)).first() is not None:
        return None
    row = (
        await session.execute(
            select(IdempotencyKey).where(IdempotencyKey.scope == claim.scope, IdempotencyKey.key == claim.key)
        )
    ).scalar_one()
    if (
        row.request_hash != claim.request_hash
        or row.status_code is None
        or row.resource_id is None
        or row.resource_version is None
    ):
        raise Conflict(
            "This idempotency key was already used for a different request; use a new key for a new request."
        )
    intake = await get_intake(session, row.resource_id, row.resource_version)
    if intake is None:  # intakes are never deleted; if one were, the key could not be replayed
        raise Conflict("This idempotency key's intake no longer exists; use a new key.")
    return StoredResponse(
        row.status_code, msgspec.json.encode(intake), row.resource_id, row.resource_version, replayed=True
    )


async def remember(session: AsyncSession, claim: IdempotencyClaim, response: StoredResponse) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.scope == claim.scope, IdempotencyKey.key == claim.key)
        .values(
            status_code=response.status_code,
            resource_id=response.intake_id,
            resource_version=response.version,
        )
    )


async def purge_expired_keys(session: AsyncSession, now: dt.datetime) -> int:
    result = await session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now))
    return int(getattr(result, "rowcount", 0) or 0)
