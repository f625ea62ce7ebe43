"""Reading intakes: one (as of a version), a filtered page, its versions, its routing."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import Text, cast, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts.intake_body import IntakeBody
from services.common.http.pagination import newest_after
from services.intake.db.models import Intake, IntakeVersion, Patient, ReferralMirror
from services.intake.intakes import schemas

_COLUMNS = (
    Intake,
    IntakeVersion.version.label("shown_version"),
    IntakeVersion.submitted_at.label("version_at"),
    IntakeVersion.submitted_by.label("version_by"),
    IntakeVersion.submitted_by_id.label("version_by_id"),
    cast(IntakeVersion.body, Text).label("body_json"),
)


def _to_schema(row: Any) -> schemas.Intake:
    intake: Intake = row.Intake
    body = msgspec.json.decode(row.body_json, type=IntakeBody)
    referral = None
    if intake.referral_id is not None:
        referral = schemas.ReferralSummary(
            id=intake.referral_id,
            destination=intake.referral_destination or "",
            priority=intake.referral_priority or "",
            status=intake.referral_status or "",
            intake_version=intake.referral_intake_version,
        )
    amended = row.shown_version > 1
    return schemas.Intake(
        **msgspec.structs.asdict(body),
        id=intake.id,
        patient_id=intake.patient_id,
        status=schemas.IntakeStatus(intake.status),
        version=row.shown_version,
        submitted_at=intake.submitted_at,
        submitted_by=intake.submitted_by,
        amended_at=row.version_at if amended else None,
        amended_by=row.version_by if amended else None,
        submitted_by_id=intake.submitted_by_id,
        amended_by_id=row.version_by_id if amended else None,
        referral=referral,
    )


async def get_intake(
    session: AsyncSession, intake_id: uuid.UUID, version: int | None = None
) -> schemas.Intake | None:
    """The intake as of `version` (default: the current one)."""
    shown = IntakeVersion.version == (Intake.version if version is None else version)
    row = (
        await session.execute(
            select(*_COLUMNS)
            .join(IntakeVersion, (IntakeVersion.intake_id == Intake.id) & shown)
            .where(Intake.id == intake_id)
            .execution_options(populate_existing=True)
        )
    ).first()
    return None if row is None else _to_schema(row)


@dataclass(frozen=True, slots=True)
class IntakeFilter:
    status: schemas.IntakeStatus | None = None
    mrn: str | None = None
    submitted_after: dt.datetime | None = None
    destination: str | None = None
    patient_id: uuid.UUID | None = None


async def list_intakes(
    session: AsyncSession, where: IntakeFilter, limit: int, after: tuple[dt.datetime, uuid.UUID] | None
) -> tuple[list[schemas.Intake], tuple[dt.datetime, uuid.UUID] | None]:
    """Newest first; returns the page and the sort key to continue after (None at the end)."""
    query = select(*_COLUMNS).join(
        IntakeVersion, (IntakeVersion.intake_id == Intake.id) & (IntakeVersion.version == Intake.version)
    )
    if where.status is not None:
        query = query.where(Intake.status == where.status.value)
    if where.mrn is not None:
        query = query.join(Patient, Patient.id == Intake.patient_id).where(Patient.mrn == where.mrn)
    if where.submitted_after is not None:
        query = query.where(Intake.submitted_at > where.submitted_after)
    if where.destination is not None:
        query = query.where(Intake.referral_destination == where.destination)
    if where.patient_id is not None:
        query = query.where(Intake.patient_id == where.patient_id)
    query = newest_after(query, (Intake.submitted_at, Intake.id), after)
    rows = (await session.execute(query.limit(limit + 1))).all()
    items = [_to_schema(row) for row in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    return items, None if last is None else (last.submitted_at, last.id)


async def list_versions(
    session: AsyncSession, intake_id: uuid.UUID, limit: int, after: int | None
) -> tuple[list[schemas.Intake], int | None] | None:
    """Every version of an intake, oldest first; None if there is no such intake."""
    if await session.get(Intake, intake_id) is None:
        return None
    query = (
        select(*_COLUMNS)
        .join(IntakeVersion, IntakeVersion.intake_id == Intake.id)
        .where(Intake.id == intake_id, IntakeVersion.version > (after or 0))
        .order_by(IntakeVersion.version)
        .limit(limit + 1)
    )
    rows = (await session.execute(query)).all()
    items = [_to_schema(row) for row in rows[:limit]]
    return items, items[-1].version if len(rows) > limit else None


@dataclass(frozen=True, slots=True)
class Routing:
    destination: str
    priority: str
    status: str
    due_by: dt.datetime | None
    reasons: list[dict[str, str]]


async def routing_of(session: AsyncSession, intake_id: uuid.UUID) -> Routing | None:
    """Where the current referral of an intake went, why and by when (None while waiting)."""
    row = (
        await session.execute(
            select(ReferralMirror)
            .join(Intake, Intake.referral_id == ReferralMirror.referral_id)
            .where(Intake.id == intake_id)
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    return Routing(
        destination=row.destination,
        priority=row.priority,
        status=row.status,
        due_by=row.due_by,
        reasons=list(row.reasons or []),
    )


async def change_reasons(session: AsyncSession, intake_id: uuid.UUID) -> dict[int, str | None]:
    rows = await session.execute(
        select(IntakeVersion.version, IntakeVersion.change_reason).where(IntakeVersion.intake_id == intake_id)
    )
    return {row.version: row.change_reason for row in rows}
