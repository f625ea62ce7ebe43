"""Hypothesis strategies for intake bodies that the API must accept.

Shared by the triage unit properties and the HTTP property tests:
- `intakes()` draws `IntakeBody` objects,
- `intake_bodies()` draws the same as JSON-ready dicts, to POST as they are.

Every drawn intake passes `check_intake` for the `today` it was drawn against (the real date by
default, as a running server sees it), so a property test never fails on a body the API would
refuse. Red-flag answers are drawn all-`no` half of the time: otherwise almost every draw would
have some flag raised and the quieter rules (REGEN, ACUTE, DEFAULT) would hardly be exercised.
"""

from __future__ import annotations

import datetime
from typing import Any

import msgspec
from hypothesis import strategies as st

from services.common.contracts import intake_body
from services.common.contracts import vocabulary as words

__all__ = [
    "RED_FLAG_QUESTIONS",
    "intake_bodies",
    "intakes",
    "red_flags",
]

RED_FLAG_QUESTIONS: tuple[str, ...] = intake_body.RedFlags.__struct_fields__

# Printable letters, marks, digits, spaces and punctuation: no control characters (PostgreSQL text
# refuses NUL) and no surrogates (not encodable as UTF-8).
_TEXT_CHARS = st.characters(categories=("L", "M", "N", "Zs", "Pd", "Po"))


def _text(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(_TEXT_CHARS, min_size=min_size, max_size=max_size)


_names = _text(1, 40).filter(lambda s: s.strip() != "")


def red_flags(
    answers: st.SearchStrategy[words.RedFlagAnswer] = st.sampled_from(words.RedFlagAnswer),
) -> st.SearchStrategy[intake_body.RedFlags]:
    """All eight answers; all `no` half of the time, else each drawn from `answers`."""
    all_no = intake_body.RedFlags(**dict.fromkeys(RED_FLAG_QUESTIONS, words.RedFlagAnswer.NO))
    drawn = st.fixed_dictionaries(dict.fromkeys(RED_FLAG_QUESTIONS, answers)).map(
        lambda kwargs: intake_body.RedFlags(**kwargs)
    )
    return st.one_of(st.just(all_no), drawn)


def _subset(values: Any, max_size: int) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.sampled_from(values), unique=True, max_size=max_size)


_treatments = st.builds(
    intake_body.TreatmentTried,
    treatment=st.sampled_from(words.Treatment),
    outcome=st.sampled_from(words.TreatmentOutcome),
    weeks=st.none() | st.integers(0, 2600),
)


@st.composite
def _intake(draw: st.DrawFn, today: datetime.date | None) -> intake_body.IntakeBody:
    day = today if today is not None else datetime.date.today()
    birth_date = draw(st.dates(day - datetime.timedelta(days=110 * 365), day))
    lived_days = (day - birth_date).days

    # Exactly one of onset_date / duration_weeks, never before birth.
    if draw(st.booleans()):
        onset_date: datetime.date | None = draw(st.dates(birth_date, day))
        duration_weeks: int | None = None
    else:
        onset_date = None
        # Bias towards the thresholds that matter (around 4, 12-13 and 26 weeks).
        duration_weeks = draw(
            st.integers(0, min(2600, lived_days // 7, 60)) | st.integers(0, min(2600, lived_days // 7))
        )

    procedure = None
    if draw(st.booleans()):
        # Mostly inside the 26-week follow-up window, sometimes long before it.
        days_ago = draw(st.integers(0, min(lived_days, 200)) | st.integers(0, lived_days))
        procedure = intake_body.RegenerativeProcedure(
            performed_on=day - datetime.timedelta(days=days_ago),
            complications=draw(_subset(words.Complication, 3)),
        )

    return intake_body.IntakeBody(
        patient=intake_body.PatientIn(
            mrn=draw(st.none() | st.from_regex(r"[A-Z]{3}-[0-9]{1,8}", fullmatch=True)),
            given_name=draw(_names),
            family_name=draw(_names),
            birth_date=birth_date,
            sex=draw(st.sampled_from(words.Sex)),
            phone=draw(st.none() | st.from_regex(r"\+?[0-9 ]{3,20}", fullmatch=True)),
            email=draw(st.none() | st.emails().filter(lambda e: len(e) <= 320)),
        ),
        complaint=intake_body.Complaint(
            regions=draw(st.lists(st.sampled_from(words.Region), min_size=1, max_size=3, unique=True)),
            onset_date=onset_date,
            duration_weeks=duration_weeks,
            intensity=draw(st.integers(0, 10)),
            trend=draw(st.sampled_from(words.Trend)),
            radiates_to=draw(_subset(words.RadiatesTo, 4)),
        ),
        symptoms=draw(_subset(words.Symptom, 9)),
        conditions=draw(_subset(words.Condition, 4)),
        risk_factors=draw(_subset(words.RiskFactor, 4)),
        treatments_tried=draw(st.lists(_treatments, max_size=4)),
        red_flags=draw(red_flags()),
        regenerative_procedure=procedure,
        notes=draw(st.none() | _text(0, 200)),
    )


def intakes(today: datetime.date | None = None) -> st.SearchStrategy[intake_body.IntakeBody]:
    """Valid `intake_body.IntakeBody` objects relative to `today` (default: the date when each is drawn)."""
    return _intake(today)


def intake_bodies(today: datetime.date | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """The same intakes as JSON-ready dicts (ISO dates, enum values), ready to POST."""
    return intakes(today).map(msgspec.to_builtins)
