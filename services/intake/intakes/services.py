"""The intake rules: validating a form, matching its patient, storing a version, publishing its
event in the same transaction, and answering a repeated request from what was stored.

A submission (or amendment) is one transaction: idempotency claim, patient, intake, version,
event, stored response; then one explicit commit. Anything that fails before the commit leaves
nothing behind, and a rejected body never gets this far.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import Table, Text, bindparam, cast, delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts.events import IntakeAmended, IntakeSubmitted
from services.common.contracts.intake_body import IntakeBody, PatientIn, Sex
from services.common.errors import Conflict, FieldProblem, InvalidFields, NotFound
from services.common.queue import publish
from services.intake.db.models import (
    IdempotencyKey,
    Intake,
    IntakeVersion,
    Patient,
    PatientChange,
    ReferralMirror,
)
from services.intake.intakes import schemas

# -- idempotency ---------------------------------------------------------------------------------


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


async def _claim(session: AsyncSession, claim: IdempotencyClaim, now: dt.datetime) -> StoredResponse | None:
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


async def _remember(session: AsyncSession, claim: IdempotencyClaim, response: StoredResponse) -> None:
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


# -- patients ------------------------------------------------------------------------------------


def _demographics(patient: PatientIn) -> dict[str, Any]:
    """The values a form sets. Names and birth date are always on the form; an `unknown` sex or
    a missing phone or email means "not asked", so it does not erase what the clinic knows."""
    values: dict[str, Any] = {
        "given_name": patient.given_name,
        "family_name": patient.family_name,
        "birth_date": patient.birth_date,
    }
    if patient.sex is not Sex.UNKNOWN:
        values["sex"] = patient.sex.value
    if patient.phone is not None:
        values["phone"] = patient.phone
    if patient.email is not None:
        values["email"] = patient.email
    return values


@dataclass(frozen=True, slots=True)
class Author:
    """Who submitted, when, and through what (`api` or `inbound`)."""

    name: str
    at: dt.datetime
    source: str = "api"
    #: The key's (or staff account's) id; None for inbound forms, which no key sends.
    id: uuid.UUID | None = None


_PATIENTS: Table = Patient.__table__  # type: ignore[assignment]
# Core, built once: the ORM's bulk-insert bookkeeping, or building the statement per request with
# its values inline, cost more than executing it.
_NEW_PATIENT = (
    pg_insert(_PATIENTS)
    .values(
        {
            name: bindparam(name, type_=_PATIENTS.c[name].type)
            for name in (
                "id",
                "mrn",
                "given_name",
                "family_name",
                "birth_date",
                "sex",
                "phone",
                "email",
                "created_at",
                "updated_at",
            )
        }
    )
    .on_conflict_do_nothing(index_elements=[_PATIENTS.c.mrn])
    .returning(_PATIENTS.c.id)
)


async def _new_patient(session: AsyncSession, patient: PatientIn, author: Author) -> uuid.UUID | None:
    """Insert a patient; None if the MRN is already taken (by a concurrent request, say)."""
    values = {
        "id": uuid.uuid4(),
        "mrn": patient.mrn,
        "given_name": patient.given_name,
        "family_name": patient.family_name,
        "birth_date": patient.birth_date,
        "sex": patient.sex.value,
        "phone": patient.phone,
        "email": patient.email,
        "created_at": author.at,
        "updated_at": author.at,
    }
    created: uuid.UUID | None = (await session.execute(_NEW_PATIENT, values)).scalar_one_or_none()
    return created


async def _update_patient(
    session: AsyncSession, patient: Patient, values: dict[str, Any], author: Author, intake_id: uuid.UUID
) -> None:
    """Apply the values that differ, keeping the replaced ones in `patient_changes`."""
    changed = {k: v for k, v in values.items() if getattr(patient, k) != v}
    if not changed:
        return
    session.add(
        PatientChange(
            patient_id=patient.id,
            intake_id=intake_id,
            changed_at=author.at,
            changed_by=author.name,
            changed_by_id=author.id,
            previous=msgspec.to_builtins({k: getattr(patient, k) for k in changed}),
        )
    )
    await session.execute(
        update(Patient).where(Patient.id == patient.id).values(**changed, updated_at=author.at)
    )


async def _patient_by_mrn(session: AsyncSession, mrn: str) -> Patient | None:
    return (
        await session.execute(select(Patient).where(Patient.mrn == mrn).with_for_update())
    ).scalar_one_or_none()


async def patient_ids_by_mrn(session: AsyncSession, mrn: str) -> list[uuid.UUID]:
    """The patient with this MRN (the access audit's search by MRN): none or one."""
    return list((await session.execute(select(Patient.id).where(Patient.mrn == mrn))).scalars())


#: What identifies a patient beside the MRN: a form naming a known MRN must agree on these.
IDENTITY_FIELDS = ("given_name", "family_name", "birth_date")


def _same_identity(existing: Patient, patient: PatientIn) -> None:
    """A known MRN with another name or birth date is a 409 naming each mismatch: it may be the
    wrong patient's MRN, and merging would mix two people's records. Correcting a recorded name
    or birth date is an amendment of that patient's own intake."""
    mismatched = [f for f in IDENTITY_FIELDS if getattr(existing, f) != getattr(patient, f)]
    if mismatched:
        raise Conflict(
            "The MRN belongs to a patient recorded with another "
            + " and ".join(f.replace("_", " ") for f in mismatched)
            + ": check the MRN, or amend that patient's intake to correct the record.",
            errors=[
                {"field": f"patient.{f}", "message": "Differs from the patient recorded under this MRN."}
                for f in mismatched
            ],
        )


async def _patient_for_new_intake(
    session: AsyncSession, patient: PatientIn, author: Author, intake_id: uuid.UUID
) -> uuid.UUID:
    """The patient with this MRN (contacts updated by the form), else a new patient."""
    created = await _new_patient(session, patient, author)
    if created is not None:
        return created
    assert patient.mrn is not None  # only an MRN can conflict
    existing = await _patient_by_mrn(session, patient.mrn)
    assert existing is not None
    _same_identity(existing, patient)
    await _update_patient(session, existing, _demographics(patient), author, intake_id)
    return existing.id


async def _patient_for_amendment(
    session: AsyncSession, current_id: uuid.UUID, patient: PatientIn, author: Author, intake_id: uuid.UUID
) -> uuid.UUID:
    """An amendment corrects the intake's patient (name and birth date included: the audited way
    to correct a record): the same patient unless the form now names another MRN. A known MRN
    moves the intake to that patient if name and birth date agree; an MRN new to the clinic is given
    to the current patient if it had none, else it starts a new patient."""
    current = await session.get(Patient, current_id, with_for_update=True)
    assert current is not None
    values = _demographics(patient)
    if patient.mrn is not None and patient.mrn != current.mrn:
        other = await _patient_by_mrn(session, patient.mrn)
        if other is not None:
            _same_identity(other, patient)
            await _update_patient(session, other, values, author, intake_id)
            return other.id
        if current.mrn is not None:
            return await _patient_for_new_intake(session, patient, author, intake_id)
        values["mrn"] = patient.mrn
    await _update_patient(session, current, values, author, intake_id)
    return current.id


# -- submitting and amending ---------------------------------------------------------------------


async def _publish_version(
    session: AsyncSession,
    intake_id: uuid.UUID,
    version: int,
    patient_id: uuid.UUID,
    body: IntakeBody,
    author: Author,
) -> None:
    event_type = IntakeSubmitted if version == 1 else IntakeAmended
    await publish(
        session,
        event_type(
            intake_id=intake_id,
            patient_id=patient_id,
            intake_version=version,
            submitted_at=author.at,
            intake=body,
        ),
        subject=intake_id,
        key=f"{event_type.TYPE}:{intake_id}:{version}",
    )


async def _respond(
    session: AsyncSession, intake_id: uuid.UUID, status_code: int, claim: IdempotencyClaim | None
) -> StoredResponse:
    intake = await get_intake(session, intake_id)
    assert intake is not None
    response = StoredResponse(status_code, msgspec.json.encode(intake), intake_id, intake.version)
    if claim is not None:
        await _remember(session, claim, response)
    await session.commit()
    return response


# A new intake and its first version in one statement (the foreign key is checked at the end of
# the statement, when both rows exist).
_NEW_INTAKE = text(
    """
    WITH intake AS (
        INSERT INTO intake.intakes (id, patient_id, version, status, source, submitted_at, submitted_by,
                                    submitted_by_id, updated_at)
        VALUES (:id, :patient_id, 1, :status, :source, :at, :by, :by_id, :at)
    )
    INSERT INTO intake.intake_versions (intake_id, version, patient_id, submitted_at, submitted_by,
                                        submitted_by_id, body)
    VALUES (:id, 1, :patient_id, :at, :by, :by_id, CAST(:body AS jsonb))
    """
)


async def submit_intake(
    session: AsyncSession,
    body: IntakeBody,
    author: Author,
    claim: IdempotencyClaim | None = None,
    *,
    existing_patient: uuid.UUID | None = None,
) -> StoredResponse:
    """Store a new intake (version 1) and publish `intake.submitted`, in one transaction.

    For a new patient that is three statements (patient; intake and version; event, its
    deliveries and NOTIFY) and the commit; the 201 is built from what was written, not read back
    (a new intake has no referral yet: the referral service hears of it only after the commit).
    `existing_patient` is the patient the front desk picked among the likely matches: the
    intake is theirs (their record updated by the form) rather than a new patient's."""
    if claim is not None and (stored := await _claim(session, claim, author.at)) is not None:
        await session.rollback()
        return stored
    intake_id = uuid.uuid4()
    if existing_patient is not None and body.patient.mrn is None:
        picked = await session.get(Patient, existing_patient, with_for_update=True)
        if picked is None:
            await session.rollback()
            raise InvalidFields([FieldProblem(field="patient", message="No such patient; search again.")])
        await _update_patient(session, picked, _demographics(body.patient), author, intake_id)
        patient_id = picked.id
    else:
        patient_id = await _patient_for_new_intake(session, body.patient, author, intake_id)
    await session.execute(
        _NEW_INTAKE,
        {
            "id": intake_id,
            "patient_id": patient_id,
            "status": schemas.IntakeStatus.SUBMITTED.value,
            "source": author.source,
            "at": author.at,
            "by": author.name,
            "by_id": author.id,
            "body": msgspec.json.encode(body).decode(),
        },
    )
    await _publish_version(session, intake_id, 1, patient_id, body, author)
    intake = schemas.Intake(
        **msgspec.structs.asdict(body),
        id=intake_id,
        patient_id=patient_id,
        status=schemas.IntakeStatus.SUBMITTED,
        version=1,
        submitted_at=author.at.astimezone(dt.UTC),  # as the database gives it back
        submitted_by=author.name,
        submitted_by_id=author.id,
    )
    response = StoredResponse(201, msgspec.json.encode(intake), intake_id, 1)
    if claim is not None:
        await _remember(session, claim, response)
    await session.commit()
    return response


async def amend_intake(
    session: AsyncSession,
    intake_id: uuid.UUID,
    body: IntakeBody,
    author: Author,
    claim: IdempotencyClaim | None = None,
    *,
    reason: str | None = None,
) -> StoredResponse:
    """Store the next version of an intake and publish `intake.amended`, in one transaction.
    Earlier versions are kept as they were; `reason` is why it was changed (pages ask for it)."""
    if claim is not None and (stored := await _claim(session, claim, author.at)) is not None:
        await session.rollback()
        return stored
    intake = await session.get(Intake, intake_id, with_for_update=True)
    if intake is None:
        await session.rollback()
        raise NotFound("No intake with this id.")
    patient_id = await _patient_for_amendment(session, intake.patient_id, body.patient, author, intake_id)
    version = intake.version + 1
    await session.execute(
        update(Intake)
        .where(Intake.id == intake_id)
        .values(version=version, patient_id=patient_id, updated_at=author.at)
    )
    session.add(
        IntakeVersion(
            intake_id=intake_id,
            version=version,
            patient_id=patient_id,
            submitted_at=author.at,
            submitted_by=author.name,
            submitted_by_id=author.id,
            body=msgspec.to_builtins(body),
            change_reason=reason,
        )
    )
    await session.flush()
    await _publish_version(session, intake_id, version, patient_id, body, author)
    return await _respond(session, intake_id, 201, claim)


# -- reading -------------------------------------------------------------------------------------

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
    if after is not None:
        query = query.where(tuple_(Intake.submitted_at, Intake.id) < tuple_(*after))
    rows = (
        await session.execute(query.order_by(Intake.submitted_at.desc(), Intake.id.desc()).limit(limit + 1))
    ).all()
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


# -- patients: finding one -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PatientFilter:
    """Names match whole, ignoring case and surrounding spaces; every given filter must hold."""

    family_name: str | None = None
    given_name: str | None = None
    birth_date: dt.date | None = None
    mrn: str | None = None


def _patient_out(row: Patient) -> schemas.PatientOut:
    return schemas.PatientOut(
        id=row.id,
        mrn=row.mrn,
        given_name=row.given_name,
        family_name=row.family_name,
        birth_date=row.birth_date,
        sex=row.sex,
        phone=row.phone,
        email=row.email,
    )


async def find_patients(
    session: AsyncSession, where: PatientFilter, limit: int, after: tuple[str, uuid.UUID] | None = None
) -> tuple[list[schemas.PatientOut], tuple[str, uuid.UUID] | None]:
    """Patients by family name, then given name; the page and the key to continue after."""
    sort_name = func.lower(Patient.family_name + " " + Patient.given_name)
    query = select(Patient, sort_name.label("sort_name"))
    if where.family_name:
        query = query.where(func.lower(Patient.family_name) == where.family_name.strip().lower())
    if where.given_name:
        query = query.where(func.lower(Patient.given_name) == where.given_name.strip().lower())
    if where.birth_date is not None:
        query = query.where(Patient.birth_date == where.birth_date)
    if where.mrn:
        query = query.where(Patient.mrn == where.mrn.strip())
    if after is not None:
        query = query.where(tuple_(sort_name, Patient.id) > tuple_(*after))
    rows = (await session.execute(query.order_by(sort_name, Patient.id).limit(limit + 1))).all()
    items = [_patient_out(r.Patient) for r in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return items, None if last is None else (last.sort_name, last.Patient.id)


async def likely_matches(session: AsyncSession, patient: PatientIn) -> list[schemas.PatientOut]:
    """Patients who may be this one, before a new record is made: the same MRN, or the same
    family name, given name and birth date."""
    if patient.mrn:
        found, _ = await find_patients(session, PatientFilter(mrn=patient.mrn), 10)
        if found:
            return found
    found, _ = await find_patients(
        session,
        PatientFilter(
            family_name=patient.family_name, given_name=patient.given_name, birth_date=patient.birth_date
        ),
        10,
    )
    return found


# -- the routing as the front desk sees it -------------------------------------------------------


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
