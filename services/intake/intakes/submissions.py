"""Submitting and amending an intake.

A submission (or amendment) is one transaction: idempotency claim, patient, intake, version,
event, stored response; then one explicit commit. Anything that fails before the commit leaves
nothing behind, and a rejected body never gets this far.
"""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.audit import concerns
from services.common.contracts.events import IntakeAmended, IntakeSubmitted
from services.common.contracts.intake_body import IntakeBody
from services.common.db.driver import Driver, Statement, driver_of
from services.common.errors import FieldProblem, InvalidFields, NotFound
from services.common.queue import publish
from services.intake.db.models import Intake, IntakeVersion, Patient
from services.intake.intakes import schemas
from services.intake.intakes.authors import Author
from services.intake.intakes.idempotency import IdempotencyClaim, StoredResponse, claim_key, remember
from services.intake.intakes.patients import (
    demographics,
    known_patient,
    new_patient_values,
    patient_for_amendment,
    update_patient,
)
from services.intake.intakes.reads import get_intake


async def _publish_version(
    db: AsyncSession | Driver,
    intake_id: uuid.UUID,
    version: int,
    patient_id: uuid.UUID,
    body: IntakeBody,
    author: Author,
) -> None:
    event_type = IntakeSubmitted if version == 1 else IntakeAmended
    await publish(
        db,
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
        await remember(session, claim, response)
    await session.commit()
    return response


# A new intake and its first version in one statement (the foreign key is checked at the end of
# the statement, when both rows exist).
_NEW_INTAKE = Statement(
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

# The common case, a patient new to the clinic, in one statement: the patient (unless its MRN is
# taken: then nothing at all is inserted and no row comes back), the intake and its first version.
_NEW_PATIENT_AND_INTAKE = Statement(
    """
    WITH patient AS (
        INSERT INTO intake.patients (id, mrn, given_name, family_name, birth_date, sex, phone, email,
                                     created_at, updated_at)
        VALUES (:patient_id, :mrn, :given_name, :family_name, :birth_date, :sex, :phone, :email, :at, :at)
        ON CONFLICT (mrn) DO NOTHING
        RETURNING id
    ), intake AS (
        INSERT INTO intake.intakes (id, patient_id, version, status, source, submitted_at, submitted_by,
                                    submitted_by_id, updated_at)
        SELECT CAST(:id AS uuid), patient.id, 1, CAST(:status AS varchar), CAST(:source AS varchar),
               CAST(:at AS timestamptz), CAST(:by AS varchar), CAST(:by_id AS uuid), CAST(:at AS timestamptz)
        FROM patient
    )
    INSERT INTO intake.intake_versions (intake_id, version, patient_id, submitted_at, submitted_by,
                                        submitted_by_id, body)
    SELECT CAST(:id AS uuid), 1, patient.id, CAST(:at AS timestamptz), CAST(:by AS varchar),
           CAST(:by_id AS uuid), CAST(:body AS jsonb)
    FROM patient
    RETURNING patient_id
    """
)


def _intake_row(intake_id: uuid.UUID, body: IntakeBody, author: Author) -> dict[str, object]:
    return {
        "id": intake_id,
        "status": schemas.IntakeStatus.SUBMITTED.value,
        "source": author.source,
        "at": author.at,
        "by": author.name,
        "by_id": author.id,
        "body": msgspec.json.encode(body).decode(),
    }


async def _new_patient_and_intake(
    driver: Driver, row: dict[str, object], body: IntakeBody
) -> uuid.UUID | None:
    """The patient, the intake and its first version; None (nothing inserted) if the MRN is known."""
    values = row | new_patient_values(body.patient) | {"patient_id": uuid.uuid4()}
    created: uuid.UUID | None = await driver.fetchval(_NEW_PATIENT_AND_INTAKE, values)
    return created


async def _published(
    driver: Driver, intake_id: uuid.UUID, patient_id: uuid.UUID, body: IntakeBody, author: Author
) -> StoredResponse:
    """`intake.submitted` published; the 201, built from what was written, not read back (a new
    intake has no referral yet: the referral service hears of it only after the commit)."""
    concerns(patient_id)
    await _publish_version(driver, intake_id, 1, patient_id, body, author)
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
    return StoredResponse(201, msgspec.json.encode(intake), intake_id, 1)


async def submit_new_patient(driver: Driver, body: IntakeBody, author: Author) -> StoredResponse | None:
    """The usual submission, by a new patient without an idempotency key, on `driver` in the
    caller's transaction (the caller commits): two statements. None, with nothing written, when
    the form's MRN is a known patient's: `submit_intake` handles that."""
    intake_id = uuid.uuid4()
    patient_id = await _new_patient_and_intake(driver, _intake_row(intake_id, body, author), body)
    return None if patient_id is None else await _published(driver, intake_id, patient_id, body, author)


async def submit_intake(
    session: AsyncSession,
    body: IntakeBody,
    author: Author,
    claim: IdempotencyClaim | None = None,
    *,
    existing_patient: uuid.UUID | None = None,
) -> StoredResponse:
    """Store a new intake (version 1) and publish `intake.submitted`, in one transaction.

    For a new patient that is two statements (patient, intake and version; event, its
    deliveries and NOTIFY) and the commit (`submit_new_patient`'s). `existing_patient` is the
    patient the front desk picked among the likely matches: the intake is theirs (their record
    updated by the form) rather than a new patient's."""
    if claim is not None and (stored := await claim_key(session, claim, author.at)) is not None:
        await session.rollback()
        return stored
    intake_id = uuid.uuid4()
    created: uuid.UUID | None = None
    if existing_patient is not None and body.patient.mrn is None:
        picked = await session.get(Patient, existing_patient, with_for_update=True)
        if picked is None:
            await session.rollback()
            raise InvalidFields([FieldProblem(field="patient", message="No such patient; search again.")])
        await update_patient(session, picked, demographics(body.patient), author, intake_id)
        patient_id = picked.id
    row = _intake_row(intake_id, body, author)
    driver = await driver_of(session)
    if existing_patient is None or body.patient.mrn is not None:
        created = await _new_patient_and_intake(driver, row, body)
        if created is not None:
            patient_id = created
        else:  # the MRN is known: that patient's intake
            patient_id = await known_patient(session, body.patient, author, intake_id)
            driver = await driver_of(session)
    if created is None:
        await driver.execute(_NEW_INTAKE, row | {"patient_id": patient_id})
    response = await _published(driver, intake_id, patient_id, body, author)
    if claim is not None:
        await remember(session, claim, response)
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
    if claim is not None and (stored := await claim_key(session, claim, author.at)) is not None:
        await session.rollback()
        return stored
    intake = await session.get(Intake, intake_id, with_for_update=True)
    if intake is None:
        await session.rollback()
        raise NotFound("No intake with this id.")
    patient_id = await patient_for_amendment(session, intake.patient_id, body.patient, author, intake_id)
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
