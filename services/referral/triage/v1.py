"""Ruleset `v1`: where an intake went, and why, before ruleset v2 replaced it (both are
published in `docs/triage-rules.md`).

Kept exactly as it ran, so a referral triaged under v1 still reads its v1 explanation and
`GET /v1/triage/rules?version=v1` shows what made it.

A pure module: the intake and today's date in, a `TriageOutcome` out. No I/O, no settings, no
logging, so the same intake on the same day always gives the same outcome, and every rule can be
unit-tested at its boundaries. The referral service passes thresholds built from its settings.

The rules are data: `RULES` is a tuple of `Rule` records (code, destination, priority, text,
source, predicate) in the order ruleset v1 lists them. `GET /v1/triage/rules?version=v1`
serves `rules_document()`, so what a clinic reviews is exactly what ran.

How the rules combine
- Every rule is evaluated and every rule that matched is recorded as a reason, the deciding ones
  first: reasons are sorted by severity (urgent_care stat > urgent_care urgent > clinician_review >
  regenerative_medicine > pain_management), stable in rule order within a severity. So a clinician
  sees the red flag *and* the degenerative disc (a CES-1 patient who also meets REGEN gets both).
- The destination and priority are those of the first (most severe) reason.

Interpretation decisions (where ruleset v1 left room)
- "No rule above fired" (UNSURE, REGEN, RECOVERY): each rule evaluates only its own clinical
  predicate; precedence alone puts the rules above first. Hence a REGEN reason can appear under an
  urgent-care outcome, which is the point: the clinician sees every finding.
- DEFAULT is a fallback: it is recorded only when no other rule matched.
- REGEN does not match when history_of_cancer is `yes`; REGEN-CANCER matches instead (vignette
  P03). With history_of_cancer `unsure`, REGEN may match but UNSURE outranks it.
- UNSURE: any of the eight red-flag answers is `unsure` (history_of_cancer included). Its reason
  text names the questions, so the clinician knows what to ask.
- Duration: `complaint.duration_weeks` when given (it wins if both are given), else whole weeks
  from `complaint.onset_date` to today (never negative). With neither (refused by `check_intake`,
  handled here so triage never fails) the duration is 0: new pain, the reading that keeps the
  CANCER red flag live rather than silently dropping it.
- chronic = duration > chronic_weeks (13 weeks is chronic, 12 is not); new pain = not chronic.
  `acute_weeks` splits acute from subacute in the derived facts; no v1 rule routes on it, because
  ACUTE covers both ("acute or subacute pain without red flags").
- ACUTE = not chronic and no red-flag question answered `yes` or `unsure` (history_of_cancer is
  one of them), and it is silenced when an urgent-care or clinician-review rule matched: a
  fracture pattern (FRACTURE) or a cancer history is a red flag too, and "conservative care first"
  beside it would mislead the clinician.
- Recent procedure = performed_on between today and procedure_window_weeks * 7 days before today,
  both ends inclusive (182 days ago is recent, 183 is not). A procedure dated in the future is not
  recent (`check_intake` refuses it anyway).
- POST-INF / POST-NERVE / POST-ALLERGY read the reported complication whatever the procedure's
  date: a reported complication is never dismissed for being old. RECOVERY needs a recent
  procedure and no complication.
- Conservative care tried = an entry among the ten conservative treatments (not surgery) whose
  outcome is no_relief or partial_relief, i.e. conservative care that fell short.
  REGEN-CONSERVATIVE-FIRST is its negation for a qualifying chronic condition: nothing
  conservative tried yet, or only with good relief. WORSE's "any treatment tried" is any
  `treatments_tried` entry, surgery included.
- AXSPA: onset date = complaint.onset_date, else today - duration_weeks; onset age = whole years
  from birth_date to that date. "Began before 45" is onset age < 45; the feature onset_before_35
  is onset age < 35. Features are counted once each; match at >= axspa_min_features.
- FRACTURE: (compression_fracture and new pain) or ((osteoporosis or long_term_corticosteroids)
  and recent_trauma).
- Rule texts quote the thresholds in force (`{chronic_weeks}` and friends are filled in from the
  `TriageThresholds` used), so a clinic that changes a setting reads the number it runs with.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Callable, Mapping
from typing import Final

import msgspec

from services.common.contracts import vocabulary as words
from services.common.contracts.intake_body import IntakeBody
from services.referral.triage import engine, shared
from services.referral.triage.engine import Destination, Priority, Rule, TriageOutcome, TriageThresholds

__all__ = [
    "RULES",
    "RULESET_VERSION",
    "Destination",
    "IntakeFacts",
    "PainPhase",
    "Priority",
    "TriageOutcome",
    "TriageThresholds",
    "derive_facts",
    "rules_document",
    "triage",
]

RULESET_VERSION: Final = "v1"
_DESTINATION_ORDER: Final = tuple(Destination)
_PRIORITY_ORDER: Final = tuple(Priority)


class PainPhase(enum.StrEnum):
    ACUTE = "acute"
    SUBACUTE = "subacute"
    CHRONIC = "chronic"


@dataclasses.dataclass(frozen=True, slots=True)
class IntakeFacts:
    """What the rules read, derived once from the intake and the clock, so each predicate is a
    one-line clinical statement rather than date arithmetic."""

    intake: IntakeBody
    thresholds: TriageThresholds
    duration_weeks: int
    phase: PainPhase
    onset_date: datetime.date
    onset_age: int
    severe: bool
    answers: Mapping[str, words.RedFlagAnswer]
    recent_procedure: bool
    conservative_care_tried: bool
    any_treatment_tried: bool
    axspa_features: tuple[str, ...]

    @property
    def chronic(self) -> bool:
        return self.phase is PainPhase.CHRONIC

    @property
    def new_pain(self) -> bool:
        return not self.chronic

    def said_yes(self, question: str) -> bool:
        return self.answers[question] is words.RedFlagAnswer.YES

    @property
    def unsure_questions(self) -> tuple[str, ...]:
        return tuple(q for q, a in self.answers.items() if a is words.RedFlagAnswer.UNSURE)

    @property
    def any_flag_raised(self) -> bool:
        """Any red-flag question answered other than `no`."""
        return any(a is not words.RedFlagAnswer.NO for a in self.answers.values())

    def has_condition(self, condition: words.Condition) -> bool:
        return condition in self.intake.conditions

    def has_risk(self, risk: words.RiskFactor) -> bool:
        return risk in self.intake.risk_factors

    def has_complication(self, complication: words.Complication) -> bool:
        procedure = self.intake.regenerative_procedure
        return procedure is not None and complication in procedure.complications

    @property
    def qualifying_condition(self) -> bool:
        """A condition the article names as a candidate for regenerative medicine."""
        return any(c in shared.REGENERATIVE_CONDITIONS for c in self.intake.conditions)


def derive_facts(
    intake: IntakeBody, today: datetime.date, thresholds: TriageThresholds = TriageThresholds()
) -> IntakeFacts:
    """The facts ruleset v1 reads, under the decisions in the module docstring."""
    complaint = intake.complaint
    duration = shared.weeks_of_pain(complaint, today)
    if duration > thresholds.chronic_weeks:
        phase = PainPhase.CHRONIC
    elif duration >= thresholds.acute_weeks:
        phase = PainPhase.SUBACUTE
    else:
        phase = PainPhase.ACUTE

    onset = shared.onset_of_pain(complaint, today)
    onset_age = shared.whole_years(intake.patient.birth_date, onset)

    procedure = intake.regenerative_procedure
    recent = (
        procedure is not None
        and 0 <= (today - procedure.performed_on).days <= thresholds.procedure_window_weeks * 7
    )

    return IntakeFacts(
        intake=intake,
        thresholds=thresholds,
        duration_weeks=duration,
        phase=phase,
        onset_date=onset,
        onset_age=onset_age,
        severe=complaint.intensity >= thresholds.severe_intensity,
        answers=msgspec.structs.asdict(intake.red_flags),
        recent_procedure=recent,
        conservative_care_tried=any(
            t.treatment in shared.CONSERVATIVE_TREATMENTS and t.outcome in shared.FELL_SHORT
            for t in intake.treatments_tried
        ),
        any_treatment_tried=bool(intake.treatments_tried),
        axspa_features=shared.axspa_features(intake, onset_age, thresholds),
    )


# --- The rules ----------------------------------------------------------------------------------

Predicate = Callable[[IntakeFacts], bool]


def _regen_candidate(f: IntakeFacts) -> bool:
    """Chronic pain from a qualifying condition after conservative care fell short."""
    return f.chronic and f.qualifying_condition and f.conservative_care_tried


def _uneventful_recovery(f: IntakeFacts) -> bool:
    procedure = f.intake.regenerative_procedure
    return procedure is not None and f.recent_procedure and not procedure.complications


def _axspa(f: IntakeFacts) -> bool:
    t = f.thresholds
    return f.onset_age < t.axspa_onset_age and f.chronic and len(f.axspa_features) >= t.axspa_min_features


def _unsure_detail(f: IntakeFacts) -> str:
    return shared.unsure_text(f.unsure_questions)


def _axspa_detail(f: IntakeFacts) -> str:
    return shared.axspa_text(f.onset_age, f.axspa_features)


_URGENT_CARE = Destination.URGENT_CARE
_ARTICLE = 'Article "Stem Cell Therapy for Back Pain: Does It Really Work"'

RULES: Final[tuple[Rule[IntakeFacts], ...]] = (
    # Urgent care, stat
    Rule(
        code="CES-1",
        destination=_URGENT_CARE,
        priority=Priority.STAT,
        text="Bladder or bowel dysfunction: possible cauda equina syndrome, a medical emergency.",
        source=f'{_ARTICLE}, "When to see a doctor"',
        predicate=lambda f: f.said_yes("bladder_or_bowel_dysfunction"),
    ),
    Rule(
        code="CES-2",
        destination=_URGENT_CARE,
        priority=Priority.STAT,
        text="Saddle numbness (groin, buttocks, inner thighs): possible cauda equina syndrome.",
        source="British Association of Spine Surgeons, cauda equina advice (2018)",
        predicate=lambda f: f.said_yes("saddle_numbness"),
    ),
    Rule(
        code="MSCC",
        destination=_URGENT_CARE,
        priority=Priority.STAT,
        text="History of cancer with limb weakness or numbness/tingling: "
        "possible metastatic spinal cord compression.",
        source="NICE CG75",
        predicate=lambda f: (
            f.said_yes("history_of_cancer")
            and (f.said_yes("limb_weakness") or f.said_yes("numbness_or_tingling"))
        ),
    ),
    Rule(
        code="INF-1",
        destination=_URGENT_CARE,
        priority=Priority.STAT,
        text="Fever or chills with injected drug use or a regenerative procedure in the last "
        "{procedure_window_weeks} weeks: possible spinal infection.",
        source=f'ACP/APS 2007 red flags; {_ARTICLE}, "Recovery"',
        predicate=lambda f: (
            f.said_yes("fever_or_chills") and (f.has_risk(words.RiskFactor.IV_DRUG_USE) or f.recent_procedure)
        ),
    ),
    Rule(
        code="POST-INF",
        destination=_URGENT_CARE,
        priority=Priority.STAT,
        text="Infection reported after a regenerative procedure.",
        source=f'{_ARTICLE}, "Recovery"',
        predicate=lambda f: f.has_complication(words.Complication.INFECTION),
    ),
    # Urgent care, urgent
    Rule(
        code="NEURO",
        destination=_URGENT_CARE,
        priority=Priority.URGENT,
        text="Numbness, tingling or limb weakness: requires immediate medical evaluation.",
        source=f'{_ARTICLE}, "When to see a doctor"',
        predicate=lambda f: f.said_yes("numbness_or_tingling") or f.said_yes("limb_weakness"),
    ),
    Rule(
        code="INF-2",
        destination=_URGENT_CARE,
        priority=Priority.URGENT,
        text="Fever or chills with back pain: possible infection.",
        source=f'{_ARTICLE}, "When to see a doctor"',
        predicate=lambda f: f.said_yes("fever_or_chills"),
    ),
    Rule(
        code="CANCER",
        destination=_URGENT_CARE,
        priority=Priority.URGENT,
        text="History of cancer with new pain ({chronic_weeks} weeks or less) or pain getting "
        "worse: rule out spinal metastasis.",
        source=f'{_ARTICLE}, "When to see a doctor"; ACP/APS 2007 red flags',
        predicate=lambda f: (
            f.said_yes("history_of_cancer")
            and (f.new_pain or f.intake.complaint.trend is words.Trend.WORSENING)
        ),
    ),
    Rule(
        code="WEIGHT",
        destination=_URGENT_CARE,
        priority=Priority.URGENT,
        text="Unexplained weight loss with back pain: rule out cancer or infection.",
        source=f'{_ARTICLE}, "When to see a doctor"',
        predicate=lambda f: f.said_yes("unexplained_weight_loss"),
    ),
    Rule(
        code="WORSE",
        destination=_URGENT_CARE,
        priority=Priority.URGENT,
        text="Pain getting worse despite treatment, or severe pain ({severe_intensity}/10 or more) "
        "getting worse after treatment was tried.",
        source=f'{_ARTICLE}, "When to see a doctor"',
        predicate=lambda f: (
            f.said_yes("worsening_despite_treatment")
            or (f.severe and f.intake.complaint.trend is words.Trend.WORSENING and f.any_treatment_tried)
        ),
    ),
    Rule(
        code="POST-NERVE",
        destination=_URGENT_CARE,
        priority=Priority.URGENT,
        text="Nerve damage reported after a regenerative procedure.",
        source=f'{_ARTICLE}, "Recovery"',
        predicate=lambda f: f.has_complication(words.Complication.NERVE_DAMAGE),
    ),
    Rule(
        code="POST-ALLERGY",
        destination=_URGENT_CARE,
        priority=Priority.URGENT,
        text="Allergic reaction reported after a regenerative procedure.",
        source=f'{_ARTICLE}, "Recovery"',
        predicate=lambda f: f.has_complication(words.Complication.ALLERGIC_REACTION),
    ),
    Rule(
        code="FRACTURE",
        destination=_URGENT_CARE,
        priority=Priority.URGENT,
        text="Possible vertebral fracture: a compression fracture with new pain, or osteoporosis "
        "or long-term corticosteroid use with recent trauma.",
        source="ACP/APS 2007 red flags",
        predicate=lambda f: (
            (f.has_condition(words.Condition.COMPRESSION_FRACTURE) and f.new_pain)
            or (
                (
                    f.has_condition(words.Condition.OSTEOPOROSIS)
                    or f.has_risk(words.RiskFactor.LONG_TERM_CORTICOSTEROIDS)
                )
                and f.has_risk(words.RiskFactor.RECENT_TRAUMA)
            )
        ),
    ),
    # Clinician review
    Rule(
        code="UNSURE",
        destination=Destination.CLINICIAN_REVIEW,
        priority=Priority.URGENT,
        text="The patient was unsure about a red-flag question: a clinician asks before the "
        "patient is routed; never guess on a red flag.",
        source="Clinic triage policy (TRIAGE.md)",
        predicate=lambda f: bool(f.unsure_questions),
        detail=_unsure_detail,
    ),
    Rule(
        code="AXSPA",
        destination=Destination.CLINICIAN_REVIEW,
        priority=Priority.URGENT,
        text="Possible axial spondyloarthritis: pain began before age {axspa_onset_age}, has lasted "
        "more than {chronic_weeks} weeks, with at least {axspa_min_features} inflammatory "
        "features. Consider rheumatology.",
        source="NICE NG65",
        predicate=_axspa,
        detail=_axspa_detail,
    ),
    # Regenerative medicine
    Rule(
        code="REGEN",
        destination=Destination.REGENERATIVE_MEDICINE,
        priority=Priority.ROUTINE,
        text="Chronic pain (more than {chronic_weeks} weeks) from degenerative disc disease, a "
        "herniated disc, osteoarthritis or spondylosis, and conservative care fell short: "
        "a candidate for regenerative medicine.",
        source=f'{_ARTICLE}, "Causes" and "Treatment Options"',
        predicate=lambda f: _regen_candidate(f) and not f.said_yes("history_of_cancer"),
    ),
    Rule(
        code="RECOVERY",
        destination=Destination.REGENERATIVE_MEDICINE,
        priority=Priority.ROUTINE,
        text="Regenerative procedure in the last {procedure_window_weeks} weeks with no complication "
        "reported: follow-up with the treating specialist.",
        source=f'{_ARTICLE}, "Recovery"',
        predicate=_uneventful_recovery,
    ),
    # Not regenerative: reasons on a pain-management referral
    Rule(
        code="REGEN-CANCER",
        destination=Destination.PAIN_MANAGEMENT,
        priority=Priority.ROUTINE,
        text="Would qualify for regenerative medicine, but the patient has a history of cancer: "
        "not routed to stem-cell therapy automatically.",
        source="NICE CG75; clinic triage policy (TRIAGE.md)",
        predicate=lambda f: _regen_candidate(f) and f.said_yes("history_of_cancer"),
    ),
    Rule(
        code="REGEN-CONSERVATIVE-FIRST",
        destination=Destination.PAIN_MANAGEMENT,
        priority=Priority.ROUTINE,
        text="Chronic pain from a condition that can qualify for regenerative medicine, but no "
        "conservative care has fallen short yet: conservative care first.",
        source=f'{_ARTICLE}, "Treatment Options"',
        predicate=lambda f: f.chronic and f.qualifying_condition and not f.conservative_care_tried,
    ),
    Rule(
        code="ACUTE",
        destination=Destination.PAIN_MANAGEMENT,
        priority=Priority.ROUTINE,
        text="Acute or subacute pain ({chronic_weeks} weeks or less) and every red-flag question "
        "answered no: conservative care first.",
        source="ACP 2017 low back pain guideline",
        predicate=lambda f: f.new_pain and not f.any_flag_raised,
        silenced_by=frozenset({Destination.URGENT_CARE, Destination.CLINICIAN_REVIEW}),
    ),
    Rule(
        code="DEFAULT",
        destination=Destination.PAIN_MANAGEMENT,
        priority=Priority.ROUTINE,
        text="No red flag and no specific pathway: conservative and interventional pain care.",
        source=f'{_ARTICLE}, "Treatment Options"',
        predicate=lambda f: True,
        fallback=True,
    ),
)


def _severity(rule: Rule[IntakeFacts]) -> tuple[int, int]:
    """Lower is more severe: destination first, then priority within a destination."""
    return _DESTINATION_ORDER.index(rule.destination), _PRIORITY_ORDER.index(rule.priority)


def triage(
    intake: IntakeBody,
    today: datetime.date,
    thresholds: TriageThresholds = TriageThresholds(),
) -> TriageOutcome:
    """Route one intake: every rule evaluated, every match recorded, the most severe decides."""
    return engine.evaluate(
        RULES, derive_facts(intake, today, thresholds), thresholds, urgency=_severity, version=RULESET_VERSION
    )


def rules_document(thresholds: TriageThresholds = TriageThresholds()) -> engine.RulesDocument:
    """The ruleset in its precedence order, with texts rendered for `thresholds`."""
    return engine.describe(RULESET_VERSION, RULES, thresholds)
