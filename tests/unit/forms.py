"""A quiet intake form with the given changes, for the triage tests that move one field at a time."""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from services.common.contracts import intake_body as ib
from tests.strategies import RED_FLAG_QUESTIONS

#: A treatment tried: what, how it went, and for how many weeks (None: not said).
Tried = tuple[ib.Treatment, ib.TreatmentOutcome, int | None]


def quiet_form(
    *,
    birth_date: datetime.date,
    weeks: int | None,
    onset_date: datetime.date | None = None,
    intensity: int = 5,
    trend: ib.Trend = ib.Trend.STABLE,
    regions: Iterable[ib.Region] = (ib.Region.LOWER_BACK,),
    radiates_to: Iterable[ib.RadiatesTo] = (),
    conditions: Iterable[ib.Condition] = (),
    symptoms: Iterable[ib.Symptom] = (),
    risk_factors: Iterable[ib.RiskFactor] = (),
    treatments: Iterable[Tried] = (),
    procedure_on: datetime.date | None = None,
    complications: Iterable[ib.Complication] = (),
    **answers: str,
) -> ib.IntakeBody:
    """A form with every red flag `no` (5/10, stable, lower back, nothing else said) but for the
    given changes. Red-flag answers are keyword arguments: `quiet_form(..., saddle_numbness="yes")`.
    Giving `onset_date` drops `weeks`, as the form allows only one."""
    unknown = set(answers) - set(RED_FLAG_QUESTIONS)
    assert not unknown, f"not red-flag questions: {unknown}"
    procedure = (
        None
        if procedure_on is None
        else ib.RegenerativeProcedure(performed_on=procedure_on, complications=list(complications))
    )
    return ib.IntakeBody(
        patient=ib.PatientIn(given_name="Test", family_name="Patient", birth_date=birth_date),
        complaint=ib.Complaint(
            regions=list(regions),
            onset_date=onset_date,
            duration_weeks=None if onset_date is not None else weeks,
            intensity=intensity,
            trend=trend,
            radiates_to=list(radiates_to),
        ),
        symptoms=list(symptoms),
        conditions=list(conditions),
        risk_factors=list(risk_factors),
        treatments_tried=[ib.TreatmentTried(treatment=t, outcome=o, weeks=w) for t, o, w in treatments],
        red_flags=ib.RedFlags(**{q: ib.RedFlagAnswer(answers.get(q, "no")) for q in RED_FLAG_QUESTIONS}),
        regenerative_procedure=procedure,
    )
