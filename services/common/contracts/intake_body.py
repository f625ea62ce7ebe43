"""The intake request body, shared by the intake service (which stores it) and the referral
service (which triages it and serves `POST /v1/triage/preview`).

One definition on purpose: if the two services parsed the form differently, an intake accepted at
the front desk could be triaged from different facts than the ones the receptionist entered.

Single-field rules (closed vocabularies, lengths, 0-10 intensity, required red flags) are msgspec
constraints, so they are enforced while decoding and a bad field never reaches the code. Rules that
relate two fields, or that depend on today's date, cannot be msgspec constraints: they live in
`check_intake`, a pure function the HTTP layer calls after decoding.
"""

from __future__ import annotations

import datetime
from typing import Annotated

import msgspec

from services.common.contracts.vocabulary import (
    Complication,
    Condition,
    RadiatesTo,
    RedFlagAnswer,
    Region,
    RiskFactor,
    Sex,
    Symptom,
    Treatment,
    TreatmentOutcome,
    Trend,
)
from services.common.errors import FieldProblem

__all__ = [
    "Complaint",
    "Complication",
    "Condition",
    "IntakeBody",
    "PatientIn",
    "RadiatesTo",
    "RedFlagAnswer",
    "RedFlags",
    "RegenerativeProcedure",
    "Region",
    "RiskFactor",
    "Sex",
    "Symptom",
    "Treatment",
    "TreatmentOutcome",
    "TreatmentTried",
    "Trend",
    "check_intake",
    "decode_intake",
]


# Closed vocabularies: `services.common.contracts.vocabulary` (re-exported here for the form's readers).


# --- Bounded scalar types -----------------------------------------------------------------------

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Mrn = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Phone = Annotated[str, msgspec.Meta(max_length=50)]
Email = Annotated[str, msgspec.Meta(max_length=320)]
Notes = Annotated[str, msgspec.Meta(max_length=4000)]
# 2600 weeks is 50 years: longer is a typing mistake, not a history.
Weeks = Annotated[int, msgspec.Meta(ge=0, le=2600)]
Intensity = Annotated[int, msgspec.Meta(ge=0, le=10)]


# Every part of the body refuses unknown fields: a misspelt field is refused rather than silently
# dropped, because a dropped red flag or condition would change where the patient is sent.
# The options are repeated on each struct rather than inherited from a base: mypy's
# dataclass_transform support does not carry them to subclasses.


class PatientIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    mrn: Mrn | None = None
    given_name: Name
    family_name: Name
    birth_date: datetime.date
    sex: Sex = Sex.UNKNOWN
    phone: Phone | None = None
    email: Email | None = None


class Complaint(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Exactly one of `onset_date` and `duration_weeks` must be given (checked by `check_intake`,
    since msgspec constraints see one field at a time)."""

    regions: Annotated[list[Region], msgspec.Meta(min_length=1, max_length=len(Region))]
    onset_date: datetime.date | None = None
    duration_weeks: Weeks | None = None
    intensity: Intensity
    trend: Trend
    radiates_to: Annotated[list[RadiatesTo], msgspec.Meta(max_length=len(RadiatesTo))] = []


#: At most this many treatments tried (each array's bound is in the OpenAPI schema).
MAX_TREATMENTS = 2 * len(Treatment)


class TreatmentTried(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    treatment: Treatment
    outcome: TreatmentOutcome
    weeks: Weeks | None = None


class RedFlags(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """All eight answers are required: a missing answer must be a 422, never read as `no`."""

    bladder_or_bowel_dysfunction: RedFlagAnswer
    saddle_numbness: RedFlagAnswer
    numbness_or_tingling: RedFlagAnswer
    limb_weakness: RedFlagAnswer
    unexplained_weight_loss: RedFlagAnswer
    fever_or_chills: RedFlagAnswer
    history_of_cancer: RedFlagAnswer
    worsening_despite_treatment: RedFlagAnswer


class RegenerativeProcedure(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    performed_on: datetime.date
    complications: Annotated[list[Complication], msgspec.Meta(max_length=len(Complication))] = []


class IntakeBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The body of `POST /v1/intakes`, its amendments, the inbound form webhook and the triage
    preview."""

    patient: PatientIn
    complaint: Complaint
    symptoms: Annotated[list[Symptom], msgspec.Meta(max_length=len(Symptom))] = []
    conditions: Annotated[list[Condition], msgspec.Meta(max_length=len(Condition))] = []
    risk_factors: Annotated[list[RiskFactor], msgspec.Meta(max_length=len(RiskFactor))] = []
    #: One entry per treatment (and a few to spare for one tried twice).
    treatments_tried: Annotated[list[TreatmentTried], msgspec.Meta(max_length=MAX_TREATMENTS)] = []
    red_flags: RedFlags
    regenerative_procedure: RegenerativeProcedure | None = None
    notes: Notes | None = None


_DECODER = msgspec.json.Decoder(IntakeBody)


def decode_intake(raw: bytes) -> IntakeBody:
    """Decode and validate a JSON intake body; raises `msgspec.ValidationError` naming the bad
    field (`... - at `$.complaint.intensity``) or `msgspec.DecodeError` for malformed JSON.

    Does not run `check_intake`: that needs today's date, which the caller owns."""
    return _DECODER.decode(raw)


# --- Cross-field checks -------------------------------------------------------------------------


ONSET_FIELD = "complaint.onset_date"
DURATION_FIELD = "complaint.duration_weeks"


def check_intake(body: IntakeBody, today: datetime.date) -> list[FieldProblem]:
    """The rules msgspec cannot express: those relating two fields and those that need today.

    Decisions:
    - "Both given" and "neither given" are both reported on `complaint.onset_date`, the first field
      of the pair on the form, so a client highlights one predictable field for the pair.
    - A `duration_weeks` longer than the patient has been alive is reported on
      `complaint.duration_weeks`; it is the same mistake as an onset date before birth.
    - A name of spaces only passes the length bound but is not a name, so it is reported here.

    Each problem names the full dotted path of the field to fix and says, in a sentence a
    receptionist can act on, what to do. Returns an empty list when the body is acceptable;
    `today` is a parameter so tests can pin it.
    """
    errors: list[FieldProblem] = []
    patient = body.patient
    complaint = body.complaint

    for field_name, value, label in (
        ("patient.given_name", patient.given_name, "given name"),
        ("patient.family_name", patient.family_name, "family name"),
    ):
        if not value.strip():
            errors.append(FieldProblem(field=field_name, message=f"Enter the patient's {label}."))

    birth_in_future = patient.birth_date > today
    if birth_in_future:
        errors.append(
            FieldProblem(
                field="patient.birth_date",
                message="The birth date is in the future; check the year.",
            )
        )

    if complaint.onset_date is not None and complaint.duration_weeks is not None:
        errors.append(
            FieldProblem(
                field=ONSET_FIELD,
                message=(
                    "Give onset_date or duration_weeks, not both: either the date the pain started "
                    "or how many weeks it has lasted."
                ),
            )
        )
    elif complaint.onset_date is None and complaint.duration_weeks is None:
        errors.append(
            FieldProblem(
                field=ONSET_FIELD,
                message=(
                    "Give onset_date or duration_weeks: the date the pain started, "
                    "or how many weeks it has lasted."
                ),
            )
        )
    elif complaint.onset_date is not None:
        if complaint.onset_date > today:
            errors.append(
                FieldProblem(
                    field=ONSET_FIELD,
                    message="The date the pain started is in the future; check the date.",
                )
            )
        elif not birth_in_future and complaint.onset_date < patient.birth_date:
            errors.append(
                FieldProblem(
                    field=ONSET_FIELD,
                    message="The pain cannot have started before the patient was born; "
                    "check the onset date and the birth date.",
                )
            )
    elif (
        complaint.duration_weeks is not None
        and not birth_in_future
        and complaint.duration_weeks * 7 > (today - patient.birth_date).days
    ):
        errors.append(
            FieldProblem(
                field=DURATION_FIELD,
                message="The pain cannot have lasted longer than the patient has been alive; "
                "check the number of weeks and the birth date.",
            )
        )

    procedure = body.regenerative_procedure
    if procedure is not None and procedure.performed_on > today:
        errors.append(
            FieldProblem(
                field="regenerative_procedure.performed_on",
                message="The procedure date is in the future; give the date it was done.",
            )
        )
    return errors
