"""Ruleset `v2`: where an intake goes, and why.

Written after a clinical review of v1 against the article ("Stem Cell Therapy for Back Pain: Does
It Really Work") and the guidance it leans on: NICE NG59 (low back pain and sciatica), NICE NG234
(spinal metastases and cord compression), the cauda equina pathways of GIRFT (2023) and BASS/SBNS
(2018), the ACP/APS red flags, NICE NG65 (axial spondyloarthritis) and ASRA/ESRA (interventional
spine procedures). Each rule names its source.

A pure module, like v1: the intake, the clinic's `today` and the thresholds in, a `TriageOutcome`
out; the rules are data (`RULES`, in precedence order) and `rules_document()` publishes them.

How the rules combine
- Every rule is evaluated; every match is a reason, in rule order.
- The most urgent match decides. Urgency compares priority first (stat > urgent > routine), then
  destination (urgent_care > clinician_review > regenerative_medicine = pain_management); among
  equally urgent matches the first in rule order decides. `RULES` is in urgency order, so the
  deciding reason is the first reason. Among the stat rules that order is the tie-break: cauda
  equina first, then a reported complication before an inferred one (POST-INF before INF-1).
- ACUTE is silenced by any urgent_care or clinician_review match; DEFAULT is recorded only when
  nothing else matched.

Invariants (tested over every combination of the eight red-flag answers)
1. Any red flag `yes` goes to urgent_care, except a cancer history without the metastasis
   pattern, which is a clinician review within the urgent service level.
2. For any one question, `unsure` is never less urgent than `no`, nor `yes` than `unsure`.
3. `unsure` about bladder/bowel or saddle numbness is urgent_care, stat.
4. A cancer history is at least clinician_review/urgent; with the metastasis pattern urgent_care.
5. Every outcome has a reason, the deciding one first, and ruleset_version `v2`.

Interpretation decisions (where ruleset v2 leaves room)
- Day and week counts never go below 0: a date after the clinic's today (a device ahead of the
  server; validation accepts one day) counts as today. A procedure dated tomorrow is 0 days old,
  recent and early; an onset dated tomorrow gives 0 weeks.
- `weeks` is `duration_weeks` when given, else whole weeks from `onset_date`; with neither
  (refused by `check_intake`, handled so triage never fails) it is 0: new, acute pain, the reading
  that keeps the time-sensitive rules live.
- `onset` is `onset_date`, else today minus 7 x `duration_weeks` days; ages are whole years,
  birthday-aware (70 on the 70th birthday, not the day before).
- "Trial fell short" needs an exercise-therapy entry (physical therapy, exercise, yoga or
  Pilates) of at least `exercise_trial_weeks` weeks with no or partial relief, and no
  conservative entry (anything but surgery) with good relief; a missing `weeks` is not an
  adequate trial.
- REGEN-DISCUSS needs history_of_cancer answered `no` (an `unsure` cancer history is not a
  candidate: UNSURE holds it anyway).
- UNSURE and CES-UNSURE name the questions answered `unsure`; AXSPA names the features it
  counted, so the clinician knows what to ask. The rest of each text is the patient text of the
  ruleset, with numbers that are settings (urgent service level, chronic weeks, procedure window,
  severe intensity, trial weeks) quoted from the thresholds in force.
- Urgent texts quote the urgent service level (`urgent_hours`, the setting `sla_urgent_hours`),
  so a clinic with another service level reads the hours it runs with.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Final

import msgspec

from services.common.contracts import vocabulary as words
from services.common.contracts.intake_body import IntakeBody
from services.referral.triage import engine, shared
from services.referral.triage.engine import Destination, Priority, Rule, TriageOutcome, TriageThresholds

__all__ = [
    "CHANGES_FROM_V1",
    "RULES",
    "RULESET_VERSION",
    "Facts",
    "derive_facts",
    "rules_document",
    "triage",
    "urgency",
]

RULESET_VERSION: Final = "v2"

_EXERCISE_THERAPY: Final = frozenset(
    {words.Treatment.PHYSICAL_THERAPY, words.Treatment.EXERCISE, words.Treatment.YOGA_OR_PILATES}
)
_CES_QUESTIONS: Final = ("bladder_or_bowel_dysfunction", "saddle_numbness")


@dataclasses.dataclass(frozen=True, slots=True)
class Facts:
    """What the v2 rules read, derived once from the intake and the clinic's today."""

    intake: IntakeBody
    thresholds: TriageThresholds
    weeks: int
    onset: datetime.date
    age: int
    onset_age: int
    answers: Mapping[str, words.RedFlagAnswer]
    procedure_days: int | None
    trial_fell_short: bool
    axspa_features: tuple[str, ...]

    # -- the complaint
    @property
    def chronic(self) -> bool:
        return self.weeks > self.thresholds.chronic_weeks

    @property
    def new_pain(self) -> bool:
        return not self.chronic

    @property
    def acute(self) -> bool:
        return self.weeks < self.thresholds.acute_weeks

    @property
    def severe(self) -> bool:
        return self.intake.complaint.intensity >= self.thresholds.severe_intensity

    @property
    def worsening(self) -> bool:
        return self.intake.complaint.trend is words.Trend.WORSENING

    @property
    def upper_spine(self) -> bool:
        return any(r in (words.Region.UPPER_BACK, words.Region.NECK) for r in self.intake.complaint.regions)

    @property
    def night_pain(self) -> bool:
        return words.Symptom.NIGHT_PAIN in self.intake.symptoms

    @property
    def both_legs(self) -> bool:
        legs = self.intake.complaint.radiates_to
        return words.RadiatesTo.LEFT_LEG in legs and words.RadiatesTo.RIGHT_LEG in legs

    # -- the answers
    def said(self, question: str, answer: words.RedFlagAnswer = words.RedFlagAnswer.YES) -> bool:
        return self.answers[question] is answer

    @property
    def unsure_questions(self) -> tuple[str, ...]:
        return tuple(q for q, a in self.answers.items() if a is words.RedFlagAnswer.UNSURE)

    @property
    def all_no(self) -> bool:
        return all(a is words.RedFlagAnswer.NO for a in self.answers.values())

    @property
    def neuro_yes(self) -> bool:
        return self.said("numbness_or_tingling") or self.said("limb_weakness")

    @property
    def neuro_flag(self) -> bool:
        return any(
            self.answers[q] is not words.RedFlagAnswer.NO for q in ("numbness_or_tingling", "limb_weakness")
        )

    @property
    def nerve_involvement(self) -> bool:
        return (
            bool(self.intake.complaint.radiates_to)
            or words.Symptom.RADIATING_PAIN in self.intake.symptoms
            or self.neuro_yes
        )

    @property
    def metastasis_pattern(self) -> bool:
        """NICE NG234: new pain, worsening, upper spine, night pain or severe pain."""
        return self.new_pain or self.worsening or self.upper_spine or self.night_pain or self.severe

    # -- history
    def has(self, item: words.Condition | words.RiskFactor) -> bool:
        return item in self.intake.conditions or item in self.intake.risk_factors

    @property
    def immunosuppressed(self) -> bool:
        return self.has(words.RiskFactor.LONG_TERM_CORTICOSTEROIDS) or self.has(
            words.RiskFactor.IMMUNOSUPPRESSION
        )

    @property
    def fracture_risk(self) -> bool:
        return (
            self.has(words.Condition.OSTEOPOROSIS)
            or self.has(words.Condition.COMPRESSION_FRACTURE)
            or self.has(words.RiskFactor.LONG_TERM_CORTICOSTEROIDS)
            or self.age >= self.thresholds.fracture_risk_age
        )

    @property
    def any_treatment(self) -> bool:
        return bool(self.intake.treatments_tried)

    @property
    def qualifying(self) -> bool:
        return any(c in shared.REGENERATIVE_CONDITIONS for c in self.intake.conditions)

    @property
    def structural(self) -> bool:
        return (
            self.has(words.Condition.SPINAL_STENOSIS)
            or self.has(words.Condition.COMPRESSION_FRACTURE)
            or self.nerve_involvement
        )

    # -- a regenerative procedure
    @property
    def recent_procedure(self) -> bool:
        return (
            self.procedure_days is not None
            and self.procedure_days <= self.thresholds.procedure_window_weeks * 7
        )

    @property
    def early_procedure(self) -> bool:
        return self.procedure_days is not None and self.procedure_days <= self.thresholds.early_procedure_days

    def complication(self, complication: words.Complication) -> bool:
        procedure = self.intake.regenerative_procedure
        return procedure is not None and complication in procedure.complications

    @property
    def any_complication(self) -> bool:
        procedure = self.intake.regenerative_procedure
        return procedure is not None and bool(procedure.complications)


def derive_facts(
    intake: IntakeBody, today: datetime.date, thresholds: TriageThresholds = TriageThresholds()
) -> Facts:
    """The facts of ruleset v2, under the decisions in the module docstring."""
    weeks = shared.weeks_of_pain(intake.complaint, today)
    onset = shared.onset_of_pain(intake.complaint, today)
    procedure = intake.regenerative_procedure
    onset_age = shared.whole_years(intake.patient.birth_date, onset)
    tried = intake.treatments_tried
    adequate_trial_short = any(
        t.treatment in _EXERCISE_THERAPY
        and t.weeks is not None
        and t.weeks >= thresholds.exercise_trial_weeks
        and t.outcome in shared.FELL_SHORT
        for t in tried
    )
    conservative_helped = any(
        t.treatment in shared.CONSERVATIVE_TREATMENTS and t.outcome is words.TreatmentOutcome.GOOD_RELIEF
        for t in tried
    )
    return Facts(
        intake=intake,
        thresholds=thresholds,
        weeks=weeks,
        onset=onset,
        age=max(0, shared.whole_years(intake.patient.birth_date, today)),
        onset_age=onset_age,
        answers=msgspec.structs.asdict(intake.red_flags),
        procedure_days=None if procedure is None else max(0, (today - procedure.performed_on).days),
        trial_fell_short=adequate_trial_short and not conservative_helped,
        axspa_features=shared.axspa_features(intake, onset_age, thresholds),
    )


# --- The rules ----------------------------------------------------------------------------------


def _unsure_detail(f: Facts) -> str:
    return shared.unsure_text(f.unsure_questions)


def _ces_unsure_detail(f: Facts) -> str:
    return shared.unsure_text(q for q in f.unsure_questions if q in _CES_QUESTIONS)


def _axspa_detail(f: Facts) -> str:
    return shared.axspa_text(f.onset_age, f.axspa_features)


def _axspa(f: Facts) -> bool:
    t = f.thresholds
    return f.onset_age < t.axspa_onset_age and f.chronic and len(f.axspa_features) >= t.axspa_min_features


_UC, _CR = Destination.URGENT_CARE, Destination.CLINICIAN_REVIEW
_REGEN, _PAIN = Destination.REGENERATIVE_MEDICINE, Destination.PAIN_MANAGEMENT
_STAT, _URGENT, _ROUTINE = Priority.STAT, Priority.URGENT, Priority.ROUTINE
_ARTICLE = 'Article "Stem Cell Therapy for Back Pain: Does It Really Work"'
_SEE_A_DOCTOR = f'{_ARTICLE}, "When to see a doctor"'
_RECOVERY = f'{_ARTICLE}, "Recovery"'
_GIRFT = "GIRFT 2023, suspected cauda equina syndrome pathway"
_BASS = "BASS/SBNS 2018, cauda equina standards"
_ACP_APS = "ACP/APS 2007 red flags"
_NG234 = "NICE NG234 (spinal metastases and spinal cord compression)"
_NG59 = "NICE NG59 (low back pain and sciatica)"

RULES: Final[tuple[Rule[Facts], ...]] = (
    # urgent_care, stat
    Rule(
        code="CES-1",
        destination=_UC,
        priority=_STAT,
        text="A change in bladder or bowel control can be a nerve emergency: go now.",
        source=f"{_SEE_A_DOCTOR}; {_GIRFT}",
        predicate=lambda f: f.said("bladder_or_bowel_dysfunction"),
    ),
    Rule(
        code="CES-2",
        destination=_UC,
        priority=_STAT,
        text="Numbness between the legs can be a nerve emergency: go now.",
        source=f"{_BASS}; {_GIRFT}",
        predicate=lambda f: f.said("saddle_numbness"),
    ),
    Rule(
        code="CES-BILAT",
        destination=_UC,
        priority=_STAT,
        text="New symptoms in both legs need emergency assessment now.",
        source=f"{_GIRFT}; {_BASS}",
        predicate=lambda f: f.both_legs and f.neuro_flag and (f.new_pain or f.worsening),
    ),
    Rule(
        code="CES-UNSURE",
        destination=_UC,
        priority=_STAT,
        text="You were unsure about bladder or saddle changes, so we assess you now.",
        source=_GIRFT,
        predicate=lambda f: any(f.said(q, words.RedFlagAnswer.UNSURE) for q in _CES_QUESTIONS),
        detail=_ces_unsure_detail,
    ),
    Rule(
        code="POST-SPINAL",
        destination=_UC,
        priority=_STAT,
        text="Nerve symptoms soon after a spinal injection need assessment now.",
        source=f"ASRA/ESRA 2018 (interventional spine procedures); {_RECOVERY}",
        predicate=lambda f: (
            f.early_procedure and (f.neuro_flag or f.complication(words.Complication.NERVE_DAMAGE))
        ),
    ),
    Rule(
        code="MSCC",
        destination=_UC,
        priority=_STAT,
        text="With a cancer history, nerve symptoms need assessment now.",
        source=_NG234,
        predicate=lambda f: (
            f.said("history_of_cancer") and (f.neuro_yes or (f.nerve_involvement and f.metastasis_pattern))
        ),
    ),
    Rule(
        code="POST-INF",
        destination=_UC,
        priority=_STAT,
        text="An infection after your procedure needs to be seen now.",
        source=_RECOVERY,
        predicate=lambda f: f.complication(words.Complication.INFECTION),
    ),
    Rule(
        code="INF-1",
        destination=_UC,
        priority=_STAT,
        text="Fever with your risk factors can mean a spinal infection: go now.",
        source=_ACP_APS,
        predicate=lambda f: (
            f.said("fever_or_chills")
            and (f.has(words.RiskFactor.IV_DRUG_USE) or f.immunosuppressed or f.recent_procedure)
        ),
    ),
    Rule(
        code="NEURO-NEW",
        destination=_UC,
        priority=_STAT,
        text="New numbness or weakness needs immediate medical evaluation.",
        source=f"{_SEE_A_DOCTOR}; {_ACP_APS}",
        predicate=lambda f: f.neuro_yes and (f.acute or f.worsening),
    ),
    # urgent_care, urgent
    Rule(
        code="NEURO",
        destination=_UC,
        priority=_URGENT,
        text="Numbness, tingling or weakness needs assessment within {urgent_hours} hours.",
        source=_SEE_A_DOCTOR,
        predicate=lambda f: f.neuro_yes,
    ),
    Rule(
        code="INF-2",
        destination=_UC,
        priority=_URGENT,
        text="Fever with back pain needs assessment within {urgent_hours} hours.",
        source=_SEE_A_DOCTOR,
        predicate=lambda f: f.said("fever_or_chills"),
    ),
    Rule(
        code="CANCER",
        destination=_UC,
        priority=_URGENT,
        text="With a cancer history, this pain needs checking within {urgent_hours} hours.",
        source=f"{_NG234}; {_SEE_A_DOCTOR}",
        predicate=lambda f: f.said("history_of_cancer") and f.metastasis_pattern,
    ),
    Rule(
        code="WEIGHT",
        destination=_UC,
        priority=_URGENT,
        text="Unexplained weight loss needs assessment within {urgent_hours} hours.",
        source=_SEE_A_DOCTOR,
        predicate=lambda f: f.said("unexplained_weight_loss"),
    ),
    Rule(
        code="WORSE",
        destination=_UC,
        priority=_URGENT,
        text="Pain worsening despite treatment needs assessment within {urgent_hours} hours.",
        source=_SEE_A_DOCTOR,
        predicate=lambda f: (
            f.said("worsening_despite_treatment") or (f.severe and f.worsening and f.any_treatment)
        ),
    ),
    Rule(
        code="FRACTURE",
        destination=_UC,
        priority=_URGENT,
        text="This could be a spinal fracture: checked within {urgent_hours} hours.",
        source=_ACP_APS,
        predicate=lambda f: f.fracture_risk and (f.new_pain or f.has(words.RiskFactor.RECENT_TRAUMA)),
    ),
    Rule(
        code="POST-NERVE",
        destination=_UC,
        priority=_URGENT,
        text="Nerve problems after your procedure: checked within {urgent_hours} hours.",
        source=_RECOVERY,
        predicate=lambda f: f.complication(words.Complication.NERVE_DAMAGE),
    ),
    Rule(
        code="POST-ALLERGY",
        destination=_UC,
        priority=_URGENT,
        text="An allergic reaction after your procedure: checked within {urgent_hours} hours.",
        source=_RECOVERY,
        predicate=lambda f: f.complication(words.Complication.ALLERGIC_REACTION),
    ),
    # clinician_review, urgent
    Rule(
        code="CANCER-HX",
        destination=_CR,
        priority=_URGENT,
        text="Because you have had cancer, a clinician checks your back within {urgent_hours} hours.",
        source=f"{_SEE_A_DOCTOR} (cancer with new or worsening pain); {_ACP_APS}",
        predicate=lambda f: f.said("history_of_cancer") and not f.metastasis_pattern,
    ),
    Rule(
        code="UNSURE",
        destination=_CR,
        priority=_URGENT,
        text="You were unsure about a warning sign: a clinician asks within {urgent_hours} hours.",
        source="Clinic triage policy",
        predicate=lambda f: bool(f.unsure_questions),
        detail=_unsure_detail,
    ),
    Rule(
        code="BILAT",
        destination=_CR,
        priority=_URGENT,
        text="Pain into both legs: a clinician contacts you within {urgent_hours} hours.",
        source=f"{_GIRFT}; {_BASS}",
        predicate=lambda f: f.both_legs,
    ),
    Rule(
        code="TRAUMA",
        destination=_CR,
        priority=_URGENT,
        text="After an injury, a clinician decides within {urgent_hours} hours on a scan.",
        source=_ACP_APS,
        predicate=lambda f: f.has(words.RiskFactor.RECENT_TRAUMA),
    ),
    Rule(
        code="SEVERE",
        destination=_CR,
        priority=_URGENT,
        text="Severe, worsening pain: a clinician contacts you within {urgent_hours} hours.",
        source=_SEE_A_DOCTOR,
        predicate=lambda f: f.severe and f.worsening and not f.any_treatment,
    ),
    # clinician_review, routine
    Rule(
        code="AXSPA",
        destination=_CR,
        priority=_ROUTINE,
        text="Possibly inflammatory: a clinician arranges rheumatology.",
        source="NICE NG65 (spondyloarthritis)",
        predicate=_axspa,
        detail=_axspa_detail,
    ),
    Rule(
        code="SPINAL-OPINION",
        destination=_CR,
        priority=_ROUTINE,
        text="Not settled after {exercise_trial_weeks} weeks of exercise therapy: "
        "a spinal opinion is arranged.",
        source=_NG59,
        predicate=lambda f: f.chronic and f.trial_fell_short and f.structural,
    ),
    # regenerative_medicine, routine
    Rule(
        code="RECOVERY",
        destination=_REGEN,
        priority=_ROUTINE,
        text="Follow-up with the team that did your procedure.",
        source=_RECOVERY,
        predicate=lambda f: f.recent_procedure and not f.any_complication,
    ),
    Rule(
        code="REGEN-DISCUSS",
        destination=_REGEN,
        priority=_ROUTINE,
        text="You may discuss regenerative treatment; evidence is mixed, not standard care.",
        source=f"{_ARTICLE}; {_NG59}",
        predicate=lambda f: (
            f.chronic
            and f.qualifying
            and f.trial_fell_short
            and not f.structural
            and f.said("history_of_cancer", words.RedFlagAnswer.NO)
        ),
    ),
    # pain_management, routine
    Rule(
        code="REGEN-CONSERVATIVE-FIRST",
        destination=_PAIN,
        priority=_ROUTINE,
        text="{exercise_trial_weeks} weeks of exercise therapy first, or continue it if it helps.",
        source=_NG59,
        predicate=lambda f: f.chronic and f.qualifying and not f.trial_fell_short,
    ),
    Rule(
        code="AGE50",
        destination=_PAIN,
        priority=_ROUTINE,
        text="Usual care first; rechecked if not better in 4-6 weeks.",
        source=_ACP_APS,
        predicate=lambda f: f.age > f.thresholds.older_age and f.new_pain,
    ),
    Rule(
        code="ACUTE",
        destination=_PAIN,
        priority=_ROUTINE,
        text="New pain without warning signs: usual care first.",
        source=f"{_NG59}; ACP 2017 low back pain guideline",
        predicate=lambda f: f.new_pain and f.all_no,
        silenced_by=frozenset({_UC, _CR}),
    ),
    Rule(
        code="DEFAULT",
        destination=_PAIN,
        priority=_ROUTINE,
        text="No warning sign found: pain-management care.",
        source=_ARTICLE,
        predicate=lambda f: True,
        fallback=True,
    ),
)

#: Urgency of a destination: regenerative medicine and pain management are equally urgent.
_DESTINATION_URGENCY: Final = {_UC: 0, _CR: 1, _REGEN: 2, _PAIN: 2}
_PRIORITY_URGENCY: Final = {_STAT: 0, _URGENT: 1, _ROUTINE: 2}


def urgency(destination: str, priority: str) -> tuple[int, int]:
    """Lower is more urgent: priority first, then destination. Also how an amendment's outcome
    is compared with the open referral."""
    return _PRIORITY_URGENCY[Priority(priority)], _DESTINATION_URGENCY[Destination(destination)]


def _rule_urgency(rule: Rule[Facts]) -> tuple[int, int]:
    return urgency(rule.destination, rule.priority)


def triage(
    intake: IntakeBody, today: datetime.date, thresholds: TriageThresholds = TriageThresholds()
) -> TriageOutcome:
    """Route one intake: every rule evaluated, every match a reason, the most urgent decides."""
    return engine.evaluate(
        RULES,
        derive_facts(intake, today, thresholds),
        thresholds,
        urgency=_rule_urgency,
        version=RULESET_VERSION,
    )


def _changes(kind: str, lines: Mapping[str, str]) -> tuple[engine.RuleChange, ...]:
    return tuple(
        engine.RuleChange(change=kind, code=code, summary=summary) for code, summary in lines.items()
    )


#: What ruleset v2 changed from v1, one line per rule code.
CHANGES_FROM_V1: Final[tuple[engine.RuleChange, ...]] = (
    *_changes(
        "added",
        {
            "CES-BILAT": "Nerve symptoms or an unsure answer, pain into both legs, new or worsening: stat.",
            "CES-UNSURE": "Unsure about bladder/bowel control or saddle numbness: assessed now.",
            "POST-SPINAL": "Nerve symptoms or nerve damage within 14 days of a procedure: stat.",
            "NEURO-NEW": "Numbness or weakness with acute (under 4 weeks) or worsening pain: stat.",
            "CANCER-HX": "A cancer history without the metastasis pattern: clinician review within 24 hours.",
            "BILAT": "Pain into both legs: clinician review within 24 hours.",
            "TRAUMA": "A recent injury: a clinician decides on a scan within 24 hours.",
            "SEVERE": "Severe, worsening pain with nothing tried yet: clinician review within 24 hours.",
            "SPINAL-OPINION": "Chronic stenosis, fracture or nerve pain after an adequate exercise trial: "
            "a spinal opinion, not regenerative medicine.",
            "REGEN-DISCUSS": "Replaces REGEN: a candidate to discuss regenerative treatment after an "
            "adequate exercise trial; not for structural causes or any cancer history.",
            "AGE50": "Over 50 with new pain: usual care, rechecked if not better.",
            "AMEND-HOLD": "Process code: an amendment that would lower or move a referral waits for "
            "a clinician.",
        },
    ),
    *_changes(
        "changed",
        {
            "CANCER": "Also upper-spine pain, night pain and severe pain count as the metastasis pattern.",
            "MSCC": "Also nerve involvement (leg pain, radiating pain) with the metastasis pattern.",
            "INF-1": "Also fever in an immunosuppressed patient (new risk factor immunosuppression).",
            "FRACTURE": "Fracture risk includes age 70 or over; with new pain or a recent injury.",
            "AXSPA": "Routine, not urgent; onset age from the actual onset date.",
            "REGEN-CONSERVATIVE-FIRST": "Needs an exercise trial of at least 6 weeks that fell short.",
            "RECOVERY": "Its own predicate; a procedure dated after today counts as today.",
            "DEFAULT": "Only when no other rule matched.",
        },
    ),
    *_changes(
        "removed",
        {
            "REGEN": "Now REGEN-DISCUSS.",
            "REGEN-CANCER": "A cancer history now goes to clinician review or urgent care.",
        },
    ),
)


def rules_document(thresholds: TriageThresholds = TriageThresholds()) -> engine.RulesDocument:
    """Ruleset v2 in its precedence order, with texts rendered for `thresholds`, and what
    changed from v1."""
    return engine.describe(RULESET_VERSION, RULES, thresholds, changes_from="v1", changes=CHANGES_FROM_V1)
