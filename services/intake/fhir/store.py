"""The intake data the FHIR interface reads beyond what `intakes.reads` offers: patients, the
keys of intake versions a search selects, and the identifiers FHIR clients gave their responses.

Every read of patient data goes through a function here or in `intakes.reads`, so an access
audit wrapping those functions covers the FHIR routes as it covers the JSON API.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.http.pagination import newest_after
from services.intake.db.models import IdempotencyKey, Intake, IntakeVersion, Patient
from services.intake.intakes.idempotency import IdempotencyClaim

#: The idempotency scope of QuestionnaireResponse identifiers (`system|value`): one per clinic,
#: kept as long as the intake, so a resent response never creates a second intake.
IDENTIFIER_SCOPE = "fhir:QuestionnaireResponse"
IDENTIFIER_TTL = dt.timedelta(days=365 * 100)


def identifier_key(system: str | None, value: str) -> str:
    return f"{system or ''}|{value}"


def identifier_claim(key: str) -> IdempotencyClaim:
    """Conditional create by identifier: whatever the body, a known identifier gets the intake it
    first created (FHIR's `If-None-Exist` semantics), so the hash is of the identifier alone."""
    return IdempotencyClaim(
        scope=IDENTIFIER_SCOPE,
        key=key,
        request_hash=hashlib.sha256(key.encode()).hexdigest(),
        ttl=IDENTIFIER_TTL,
    )


async def intakes_for_identifier(session: AsyncSession, system: str | None, value: str) -> list[uuid.UUID]:
    """The intakes created under an identifier; with no system given, under any system."""
    if system is None:
        match = IdempotencyKey.key.endswith(f"|{value}", autoescape=True)
    else:
        match = IdempotencyKey.key == identifier_key(system, value)
    found = await session.execute(
        select(IdempotencyKey.resource_id).where(
            IdempotencyKey.scope == IDENTIFIER_SCOPE, match, IdempotencyKey.resource_id.is_not(None)
        )
    )
    return [intake_id for intake_id in found.scalars() if intake_id is not None]


async def identifiers_of(session: AsyncSession, intake_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The `system|value` each intake was created under through FHIR (if it was)."""
    if not intake_ids:
        return {}
    rows = await session.execute(
        select(IdempotencyKey.resource_id, IdempotencyKey.key).where(
            IdempotencyKey.scope == IDENTIFIER_SCOPE,
            IdempotencyKey.resource_id.in_(list(intake_ids)),
        )
    )
    return {intake_id: key for intake_id, key in rows if intake_id is not None}


async def get_patient(session: AsyncSession, patient_id: uuid.UUID) -> Patient | None:
    return await session.get(Patient, patient_id)


@dataclass(frozen=True, slots=True)
class PatientQuery:
    patient_id: uuid.UUID | None = None
    mrn: str | None = None
    updated: Sequence[ColumnElement[bool]] = ()


async def find_patients(
    session: AsyncSession, where: PatientQuery, limit: int, after: tuple[dt.datetime, uuid.UUID] | None
) -> tuple[list[Patient], tuple[dt.datetime, uuid.UUID] | None]:
    """Newest first; the page and the key to continue after (None at the end)."""
    query = select(Patient).where(*where.updated)
    if where.patient_id is not None:
        query = query.where(Patient.id == where.patient_id)
    if where.mrn is not None:
        query = query.where(Patient.mrn == where.mrn)
    query = newest_after(query, (Patient.created_at, Patient.id), after)
    rows = list((await session.execute(query.limit(limit + 1))).scalars().all())
    page = rows[:limit]
    return page, (page[-1].created_at, page[-1].id) if len(rows) > limit else None


@dataclass(frozen=True, slots=True)
class VersionQuery:
    patient_id: uuid.UUID | None = None
    intake_ids: Sequence[uuid.UUID] | None = None
    version: int | None = None
    authored: Sequence[ColumnElement[bool]] = ()


VersionKey = tuple[dt.datetime, uuid.UUID, int]


async def find_versions(
    session: AsyncSession, where: VersionQuery, limit: int, after: VersionKey | None
) -> tuple[list[tuple[uuid.UUID, int]], VersionKey | None]:
    """(intake id, version) of the versions the query selects, newest first, and the key to
    continue after; each is then read with `intakes.reads.get_intake`."""
    query = (
        select(IntakeVersion.submitted_at, IntakeVersion.intake_id, IntakeVersion.version)
        .join(Intake, Intake.id == IntakeVersion.intake_id)
        .where(*where.authored)
    )
    if where.patient_id is not None:
        query = query.where(Intake.patient_id == where.patient_id)
    if where.intake_ids is not None:
        query = query.where(IntakeVersion.intake_id.in_(list(where.intake_ids)))
    if where.version is not None:
        query = query.where(IntakeVersion.version == where.version)
    key = (IntakeVersion.submitted_at, IntakeVersion.intake_id, IntakeVersion.version)
    rows = (await session.execute(newest_after(query, key, after).limit(limit + 1))).all()
    page = [(row.intake_id, row.version) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return page, None if last is None else (last.submitted_at, last.intake_id, last.version)
