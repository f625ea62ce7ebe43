"""Clinical readings both rulesets make the same way: which treatments are conservative, which
conditions can qualify for regenerative medicine, ages in whole years, the inflammatory
(axSpA) features, and the plain words for the red-flag questions."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Final

from services.common.contracts.intake_body import Complaint, IntakeBody
from services.common.contracts.vocabulary import Condition, RiskFactor, Symptom, Treatment, TreatmentOutcome
from services.referral.triage.engine import TriageThresholds

__all__ = [
    "CONSERVATIVE_TREATMENTS",
    "FELL_SHORT",
    "RED_FLAG_LABELS",
    "REGENERATIVE_CONDITIONS",
    "axspa_features",
    "axspa_text",
    "onset_of_pain",
    "unsure_text",
    "weeks_of_pain",
    "whole_years",
]

#: Every treatment on the form but surgery (listed, so a new form value changes no ruleset).
CONSERVATIVE_TREATMENTS: Final = frozenset(
    {
        Treatment.PHYSICAL_THERAPY,
        Treatment.MEDICATION,
        Treatment.CORTICOSTEROID_INJECTION,
        Treatment.CHIROPRACTIC,
        Treatment.ACUPUNCTURE,
        Treatment.MASSAGE,
        Treatment.YOGA_OR_PILATES,
        Treatment.EXERCISE,
        Treatment.HEAT_OR_COLD,
        Treatment.WEIGHT_MANAGEMENT,
    }
)
FELL_SHORT: Final = frozenset({TreatmentOutcome.NO_RELIEF, TreatmentOutcome.PARTIAL_RELIEF})
#: The conditions the article names as candidates for regenerative medicine.
REGENERATIVE_CONDITIONS: Final = frozenset(
    {
        Condition.DEGENERATIVE_DISC_DISEASE,
        Condition.HERNIATED_DISC,
        Condition.OSTEOARTHRITIS,
        Condition.SPONDYLOSIS,
    }
)

# Plain words for each red-flag question, for reason texts a clinician reads.
RED_FLAG_LABELS: Final[Mapping[str, str]] = {
    "bladder_or_bowel_dysfunction": "bladder or bowel dysfunction",
    "saddle_numbness": "saddle numbness",
    "numbness_or_tingling": "numbness or tingling",
    "limb_weakness": "limb weakness",
    "unexplained_weight_loss": "unexplained weight loss",
    "fever_or_chills": "fever or chills",
    "history_of_cancer": "history of cancer",
    "worsening_despite_treatment": "worsening despite treatment",
}


def weeks_of_pain(complaint: Complaint, today: datetime.date) -> int:
    """`duration_weeks` when given, else whole weeks since `onset_date` (a date after today counts
    as today), else 0: new pain, the reading that keeps the time-sensitive rules live."""
    if complaint.duration_weeks is not None:
        return complaint.duration_weeks
    if complaint.onset_date is not None:
        return max(0, (today - complaint.onset_date).days) // 7
    return 0


def onset_of_pain(complaint: Complaint, today: datetime.date) -> datetime.date:
    """`onset_date`, else today minus 7 x `duration_weeks` days."""
    return complaint.onset_date or today - datetime.timedelta(days=7 * (complaint.duration_weeks or 0))


def whole_years(start: datetime.date, end: datetime.date) -> int:
    """Birthday-aware: 70 on the 70th birthday, 69 the day before."""
    return end.year - start.year - ((end.month, end.day) < (start.month, start.day))


def axspa_features(intake: IntakeBody, onset_age: int, thresholds: TriageThresholds) -> tuple[str, ...]:
    """The inflammatory features of NICE NG65 this intake shows, each counted once."""
    symptoms = set(intake.symptoms)
    present = {
        "onset_before_35": onset_age < thresholds.axspa_early_onset_age,
        "night_waking": Symptom.NIGHT_WAKING in symptoms,
        "alternating_buttock_pain": Symptom.ALTERNATING_BUTTOCK_PAIN in symptoms,
        "improves_with_exercise": Symptom.IMPROVES_WITH_EXERCISE in symptoms,
        "nsaid_response": Symptom.NSAID_RESPONSE in symptoms,
        "family_history_spondyloarthritis": RiskFactor.FAMILY_HISTORY_SPONDYLOARTHRITIS
        in intake.risk_factors,
        "psoriasis": Condition.PSORIASIS in intake.conditions,
    }
    return tuple(name for name, shown in present.items() if shown)


def unsure_text(questions: Iterable[str]) -> str:
    return "Unsure about: " + ", ".join(RED_FLAG_LABELS[q] for q in questions) + "."


def axspa_text(onset_age: int, features: Iterable[str]) -> str:
    return (
        f"Onset at age {onset_age}; features: " + ", ".join(name.replace("_", " ") for name in features) + "."
    )
