"""The clinic's plain words for the intake form: one label for each field and each value of the
closed vocabularies in `intake_body`, and for where a referral goes and how urgent it is.

Pages read every label from here (and nowhere else), so a vocabulary module can take this over
whole. Keys are the enums themselves; they compare equal to the plain strings stored.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from services.common.contracts.intake_body import (
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
from services.common.contracts.vocabulary import Destination, Priority, Word

VALUE_LABELS: Final[Mapping[enum.Enum, str]] = {
    Region.LOWER_BACK: "Lower back",
    Region.UPPER_BACK: "Upper back",
    Region.NECK: "Neck",
    Trend.IMPROVING: "Getting better",
    Trend.STABLE: "About the same",
    Trend.WORSENING: "Getting worse",
    RadiatesTo.LEFT_LEG: "Left leg",
    RadiatesTo.RIGHT_LEG: "Right leg",
    RadiatesTo.LEFT_ARM: "Left arm",
    RadiatesTo.RIGHT_ARM: "Right arm",
    Symptom.STIFFNESS: "Stiffness",
    Symptom.RADIATING_PAIN: "Pain that spreads (into a leg or arm)",
    Symptom.MUSCLE_SPASMS: "Muscle spasms",
    Symptom.NIGHT_PAIN: "Pain at night",
    Symptom.NIGHT_WAKING: "Woken at night by the pain",
    Symptom.MORNING_STIFFNESS: "Stiff in the morning (more than 30 minutes)",
    Symptom.ALTERNATING_BUTTOCK_PAIN: "Buttock pain that switches sides",
    Symptom.IMPROVES_WITH_EXERCISE: "Gets better with exercise",
    Symptom.NSAID_RESPONSE: "Eased by anti-inflammatory tablets (such as ibuprofen)",
    Condition.HERNIATED_DISC: "Herniated (slipped) disc",
    Condition.DEGENERATIVE_DISC_DISEASE: "Degenerative disc disease",
    Condition.SPINAL_STENOSIS: "Spinal stenosis",
    Condition.COMPRESSION_FRACTURE: "Compression fracture of the spine",
    Condition.OSTEOARTHRITIS: "Osteoarthritis",
    Condition.SPONDYLOSIS: "Spondylosis",
    Condition.OSTEOPOROSIS: "Osteoporosis",
    Condition.PSORIASIS: "Psoriasis",
    RiskFactor.POOR_POSTURE: "Poor posture",
    RiskFactor.OBESITY: "Obesity",
    RiskFactor.INACTIVITY: "Little physical activity",
    RiskFactor.STRESS: "Stress",
    RiskFactor.ANXIETY: "Anxiety",
    RiskFactor.LONG_TERM_CORTICOSTEROIDS: "Takes steroid tablets long term",
    RiskFactor.IV_DRUG_USE: "Injects drugs",
    RiskFactor.RECENT_TRAUMA: "Recent fall, accident or injury",
    RiskFactor.FAMILY_HISTORY_SPONDYLOARTHRITIS: "Family history of spondyloarthritis",
    Treatment.PHYSICAL_THERAPY: "Physical therapy",
    Treatment.MEDICATION: "Medication",
    Treatment.CORTICOSTEROID_INJECTION: "Steroid injection",
    Treatment.SURGERY: "Surgery",
    Treatment.CHIROPRACTIC: "Chiropractic",
    Treatment.ACUPUNCTURE: "Acupuncture",
    Treatment.MASSAGE: "Massage",
    Treatment.YOGA_OR_PILATES: "Yoga or Pilates",
    Treatment.HEAT_OR_COLD: "Heat or cold packs",
    Treatment.EXERCISE: "Exercise",
    Treatment.WEIGHT_MANAGEMENT: "Weight management",
    TreatmentOutcome.NO_RELIEF: "No relief",
    TreatmentOutcome.PARTIAL_RELIEF: "Some relief",
    TreatmentOutcome.GOOD_RELIEF: "Good relief",
    RedFlagAnswer.YES: "Yes",
    RedFlagAnswer.NO: "No",
    RedFlagAnswer.UNSURE: "Not sure",
    Complication.INFECTION: "Infection",
    Complication.NERVE_DAMAGE: "Nerve damage",
    Complication.ALLERGIC_REACTION: "Allergic reaction",
    Sex.FEMALE: "Female",
    Sex.MALE: "Male",
    Sex.OTHER: "Other",
    Sex.UNKNOWN: "Not asked",
}

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

DESTINATION_LABELS: Final[Mapping[str, str]] = {
    Destination.URGENT_CARE: "Urgent care",
    Destination.CLINICIAN_REVIEW: "A clinician reviews it first",
    Destination.REGENERATIVE_MEDICINE: "Regenerative medicine",
    Destination.PAIN_MANAGEMENT: "Pain management",
}

PRIORITY_LABELS: Final[Mapping[str, str]] = {
    Priority.STAT: "Immediately",
    Priority.URGENT: "Urgent (within a day)",
    Priority.ROUTINE: "Routine",
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
    for member in VALUE_LABELS:
        if member.value == value:
            return VALUE_LABELS[member]
    return value


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


def word_labels(kind: type[Word]) -> dict[str, str]:
    """Each value of a closed set of the vocabulary with its label: how a page shows a stored code
    (a role, a destination, an event type) in words. A value the set no longer has is shown as
    stored (`.get(value, value)`)."""
    return {str(w.value): w.label for w in kind}
