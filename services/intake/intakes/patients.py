"""An intake's patient: matched by MRN (identity checked), created, or updated by the form with
the replaced values kept; and finding patients for the front desk."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import Table, bindparam, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts.intake_body import PatientIn, Sex
from services.common.errors import Conflict
from services.intake.db.models import Patient, PatientChange
from services.intake.intakes import schemas
from services.intake.intakes.authors import Author


def demographics(patient: PatientIn) -> dict[str, Any]:
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


def new_patient_values(patient: PatientIn) -> dict[str, Any]:
    """A new patient's columns as the form gives them (every one: a new patient has nothing to
    keep; an `unknown` sex is stored as such)."""
    return {**msgspec.structs.asdict(patient), "sex": patient.sex.value}


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
    stamps = {"id": uuid.uuid4(), "created_at": author.at, "updated_at": author.at}
    row = new_patient_values(patient) | stamps
    created: uuid.UUID | None = (await session.execute(_NEW_PATIENT, row)).scalar_one_or_none()
    return created


async def update_patient(
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


async def patient_for_new_intake(
    session: AsyncSession, patient: PatientIn, author: Author, intake_id: uuid.UUID
) -> uuid.UUID:
    """The patient with this MRN (contacts updated by the form), else a new patient."""
    created = await _new_patient(session, patient, author)
    if created is not None:
        return created
    return await known_patient(session, patient, author, intake_id)


async def known_patient(
    session: AsyncSession, patient: PatientIn, author: Author, intake_id: uuid.UUID
) -> uuid.UUID:
    """The patient already recorded under the form's MRN (identity checked), updated by the form."""
    assert patient.mrn is not None  # only an MRN can conflict
    existing = await _patient_by_mrn(session, patient.mrn)
    assert existing is not None
    _same_identity(existing, patient)
    await update_patient(session, existing, demographics(patient), author, intake_id)
    return existing.id


async def patient_for_amendment(
    session: AsyncSession, current_id: uuid.UUID, patient: PatientIn, author: Author, intake_id: uuid.UUID
) -> uuid.UUID:
    """An amendment corrects the intake's patient (name and birth date included: the audited way
    to correct a record): the same patient unless the form now names another MRN. A known MRN
    moves the intake to that patient if name and birth date agree; an MRN new to the clinic is given
    to the current patient if it had none, else it starts a new patient."""
    current = await session.get(Patient, current_id, with_for_update=True)
    assert current is not None
    values = demographics(patient)
    if patient.mrn is not None and patient.mrn != current.mrn:
        other = await _patient_by_mrn(session, patient.mrn)
        if other is not None:
            _same_identity(other, patient)
            await update_patient(session, other, values, author, intake_id)
            return other.id
        if current.mrn is not None:
            return await patient_for_new_intake(session, patient, author, intake_id)
        values["mrn"] = patient.mrn
    await update_patient(session, current, values, author, intake_id)
    return current.id


@dataclass(frozen=True, slots=True)
class PatientFilter:
    """Names match whole, ignoring case and surrounding spaces; every given filter must hold."""

    family_name: str | None = None
    given_name: str | None = None
    birth_date: dt.date | None = None
    mrn: str | None = None


def _patient_out(row: Patient) -> schemas.PatientOut:
    return msgspec.convert(row, schemas.PatientOut, from_attributes=True)


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
