"""The clinic's plain words for the intake form: one label for each field and each value of the
closed vocabularies, and for where a referral goes and how urgent it is.

A value's label is defined once, beside the value, in `vocabulary`; this module only indexes those
labels for pages (by member or by the plain string stored) and adds the words that are not values:
field names, the red-flag questions, the advice read to a patient.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from typing import Final

from services.common.contracts import vocabulary as words


def _every_word(kind: type[words.Word]) -> Iterator[words.Word]:
    for sub in kind.__subclasses__():
        yield from sub
        yield from _every_word(sub)


_WORDS: Final = tuple(_every_word(words.Word))
#: Every value of every closed set with its label, as the vocabulary defines it (no second list).
VALUE_LABELS: Final[Mapping[enum.Enum, str]] = {w: w.label for w in _WORDS}
_LABEL_OF_VALUE: Final[Mapping[str, str]] = {str(w.value): w.label for w in _WORDS}

#: The eight red-flag questions, as the receptionist asks them (keys: `RedFlags` fields).
RED_FLAG_QUESTIONS: Final[Mapping[str, str]] = {
    "bladder_or_bowel_dysfunction": "Any new trouble controlling the bladder or bowels?",
    "saddle_numbness": "Any numbness around the groin, buttocks or inner thighs?",
    "numbness_or_tingling": "Any numbness or tingling in the legs or arms?",
    "limb_weakness": "Any new weakness in a leg or an arm?",
    "unexplained_weight_loss": "Any weight loss without trying?",
    "fever_or_chills": "Any fever or chills?",
    "history_of_cancer": "Has the patient ever had cancer?",
    "worsening_despite_treatment": "Is the pain getting worse despite treatment?",
}

#: Every field of the form by its path in the body, as an error or a version comparison names it.
FIELD_LABELS: Final[Mapping[str, str]] = {
    "patient.mrn": "Medical record number (MRN)",
    "patient.given_name": "Given name",
    "patient.family_name": "Family name",
    "patient.birth_date": "Date of birth",
    "patient.sex": "Sex",
    "patient.phone": "Phone",
    "patient.email": "Email",
    "complaint.regions": "Where is the pain",
    "complaint.onset_date": "When the pain started",
    "complaint.duration_weeks": "How many weeks the pain has lasted",
    "complaint.intensity": "Pain today, 0 to 10",
    "complaint.trend": "Is the pain getting better or worse",
    "complaint.radiates_to": "Does the pain spread",
    "symptoms": "Other symptoms",
    "conditions": "Diagnosed conditions",
    "risk_factors": "Risk factors",
    "treatments_tried": "Treatments tried",
    "regenerative_procedure": "Regenerative procedure",
    "regenerative_procedure.performed_on": "Date of the regenerative procedure",
    "regenerative_procedure.complications": "Complications after the procedure",
    "notes": "Notes",
    **{f"red_flags.{k}": v for k, v in RED_FLAG_QUESTIONS.items()},
}


#: What the front desk tells the patient now, by priority, when the referral is to urgent care.
URGENT_CARE_ADVICE: Final[Mapping[str, str]] = {
    "stat": "Tell the patient now: go to the emergency department today, without waiting for an "
    "appointment. If they cannot get there safely, call an ambulance.",
    "urgent": "Tell the patient now: they must be seen by urgent care today. Do not book a routine "
    "appointment; the urgent-care team will call them.",
}


def label(value: enum.Enum | str) -> str:
    """The plain words for a vocabulary value (the value itself if it has none)."""
    if isinstance(value, enum.Enum):
        return VALUE_LABELS.get(value, str(value.value))
    return _LABEL_OF_VALUE.get(value, value)


def field_label(path: str) -> str:
    """The words for a field path (`treatments_tried[1].outcome` → "Treatments tried, row 2: ...")."""
    if path in FIELD_LABELS:
        return FIELD_LABELS[path]
    if path.startswith("treatments_tried["):
        index, _, rest = path.removeprefix("treatments_tried[").partition("]")
        sub = {".treatment": "treatment", ".outcome": "how much it helped", ".weeks": "weeks"}.get(rest, rest)
        return f"Treatments tried, row {int(index) + 1}: {sub}" if index.isdigit() else path
    base = path.split("[", 1)[0]
    return FIELD_LABELS.get(base, path)


def word_labels(kind: type[words.Word]) -> dict[str, str]:
    """Each value of a closed set of the vocabulary with its label: how a page shows a stored code
    (a role, a destination, an event type) in words. A value the set no longer has is shown as
    stored (`.get(value, value)`)."""
    return {str(w.value): w.label for w in kind}


DESTINATION_LABELS: Final[Mapping[str, str]] = word_labels(words.Destination)
PRIORITY_LABELS: Final[Mapping[str, str]] = word_labels(words.Priority)
