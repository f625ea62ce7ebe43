"""Ruleset v2: its new rules at their boundaries, how the rules combine, the published document,
and the five invariants checked over every combination of the eight red-flag answers (3^8) on
several base forms."""

from __future__ import annotations

import datetime
import itertools
import json
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings

from services.common.contracts import intake_body as ib
from services.referral.triage import rules_document, triage
from services.referral.triage.engine import TriageOutcome, TriageThresholds
from services.referral.triage.v2 import CHANGES_FROM_V1, RULES, urgency
from tests.strategies import RED_FLAG_QUESTIONS, intakes
from tests.unit.forms import quiet_form

TODAY = datetime.date(2026, 5, 15)
RULE = {rule.code: rule for rule in RULES}
NO, UNSURE, YES = ib.RedFlagAnswer.NO, ib.RedFlagAnswer.UNSURE, ib.RedFlagAnswer.YES


def years_ago(years: int, days: int = 0) -> datetime.date:
    return TODAY.replace(year=TODAY.year - years) - datetime.timedelta(days=days)


def form(*, weeks: int | None = 30, birth_date: datetime.date | None = None, **changes: Any) -> ib.IntakeBody:
    """A quiet chronic form (age 40, 30 weeks, 5/10, stable, lower back, every answer no) with
    the given changes, as `quiet_form` takes them; red-flag answers as keywords."""
    return quiet_form(weeks=weeks, birth_date=birth_date or years_ago(40, 100), **changes)


def codes(outcome: TriageOutcome) -> list[str]:
    return [reason.code for reason in outcome.reasons]


def routed(outcome: TriageOutcome) -> tuple[str, str, str]:
    return outcome.destination.value, outcome.priority.value, outcome.reasons[0].code


PT = ib.Treatment.PHYSICAL_THERAPY
PARTIAL, NONE, GOOD = (
    ib.TreatmentOutcome.PARTIAL_RELIEF,
    ib.TreatmentOutcome.NO_RELIEF,
    ib.TreatmentOutcome.GOOD_RELIEF,
)


# --- The rules the review asked for ------------------------------------------------------------


@pytest.mark.parametrize("question", ["bladder_or_bowel_dysfunction", "saddle_numbness"])
def test_unsure_about_bladder_or_saddle_is_assessed_now(question: str) -> None:
    outcome = triage(form(**{question: "unsure"}), TODAY)
    assert routed(outcome) == ("urgent_care", "stat", "CES-UNSURE")
    assert "UNSURE" in codes(outcome)


@pytest.mark.parametrize(
    ("neuro", "trend", "weeks", "expected"),
    [
        ("yes", ib.Trend.STABLE, 2, "CES-BILAT"),
        ("unsure", ib.Trend.STABLE, 2, "CES-BILAT"),
        ("unsure", ib.Trend.WORSENING, 30, "CES-BILAT"),
        ("no", ib.Trend.STABLE, 2, "BILAT"),
        ("no", ib.Trend.WORSENING, 30, "BILAT"),
    ],
)
def test_symptoms_in_both_legs(neuro: str, trend: ib.Trend, weeks: int, expected: str) -> None:
    legs = (ib.RadiatesTo.LEFT_LEG, ib.RadiatesTo.RIGHT_LEG)
    outcome = triage(form(radiates_to=legs, trend=trend, weeks=weeks, numbness_or_tingling=neuro), TODAY)
    assert outcome.reasons[0].code == expected
    assert "BILAT" in codes(outcome)


@pytest.mark.parametrize(("days", "stat"), [(0, True), (14, True), (15, False)])
def test_nerve_symptoms_within_14_days_of_a_procedure_are_stat(days: int, stat: bool) -> None:
    outcome = triage(form(procedure_on=TODAY - datetime.timedelta(days=days), limb_weakness="unsure"), TODAY)
    assert (outcome.reasons[0].code == "POST-SPINAL") is stat
    damaged = triage(
        form(
            procedure_on=TODAY - datetime.timedelta(days=days), complications=[ib.Complication.NERVE_DAMAGE]
        ),
        TODAY,
    )
    assert routed(damaged)[2] == ("POST-SPINAL" if stat else "POST-NERVE")


def test_cancer_history_with_night_pain_or_thoracic_pain_is_urgent_care() -> None:
    for changes in (
        {"symptoms": [ib.Symptom.NIGHT_PAIN]},
        {"regions": [ib.Region.UPPER_BACK]},
        {"intensity": 7},
    ):
        outcome = triage(form(history_of_cancer="yes", **changes), TODAY)  # type: ignore[arg-type]
        assert routed(outcome) == ("urgent_care", "urgent", "CANCER"), changes


def test_cancer_history_with_leg_pain_and_the_pattern_is_cord_compression() -> None:
    outcome = triage(form(history_of_cancer="yes", weeks=2, radiates_to=[ib.RadiatesTo.LEFT_LEG]), TODAY)
    assert routed(outcome) == ("urgent_care", "stat", "MSCC")


def test_fever_in_an_immunosuppressed_patient_is_stat() -> None:
    for risk in (ib.RiskFactor.IMMUNOSUPPRESSION, ib.RiskFactor.LONG_TERM_CORTICOSTEROIDS):
        outcome = triage(form(risk_factors=[risk], fever_or_chills="yes"), TODAY)
        assert routed(outcome) == ("urgent_care", "stat", "INF-1")


@pytest.mark.parametrize(
    ("weeks", "trend", "code"),
    [(3, ib.Trend.STABLE, "NEURO-NEW"), (4, ib.Trend.STABLE, "NEURO"), (30, ib.Trend.WORSENING, "NEURO-NEW")],
)
def test_new_numbness_needs_immediate_evaluation(weeks: int, trend: ib.Trend, code: str) -> None:
    outcome = triage(form(weeks=weeks, trend=trend, numbness_or_tingling="yes"), TODAY)
    assert outcome.reasons[0].code == code


def test_fracture_risk_without_trauma_from_age_osteoporosis_or_steroids() -> None:
    assert routed(triage(form(weeks=3, birth_date=years_ago(70)), TODAY))[2] == "FRACTURE"
    assert routed(triage(form(weeks=3, birth_date=years_ago(70, -1)), TODAY))[2] == "AGE50"
    assert routed(triage(form(conditions=[ib.Condition.OSTEOPOROSIS], weeks=3), TODAY))[2] == "FRACTURE"
    chronic_trauma = form(risk_factors=[ib.RiskFactor.LONG_TERM_CORTICOSTEROIDS, ib.RiskFactor.RECENT_TRAUMA])
    assert routed(triage(chronic_trauma, TODAY)) == ("urgent_care", "urgent", "FRACTURE")


def test_severe_worsening_pain_with_nothing_tried_is_held_not_routine() -> None:
    outcome = triage(form(weeks=2, intensity=8, trend=ib.Trend.WORSENING), TODAY)
    assert routed(outcome) == ("clinician_review", "urgent", "SEVERE")
    assert "ACUTE" not in codes(outcome)


@pytest.mark.parametrize(
    ("treatments", "expected"),
    [
        ([(PT, PARTIAL, 6)], "REGEN-DISCUSS"),
        ([(PT, PARTIAL, 5)], "REGEN-CONSERVATIVE-FIRST"),
        ([(PT, PARTIAL, None)], "REGEN-CONSERVATIVE-FIRST"),
        ([(ib.Treatment.HEAT_OR_COLD, NONE, 52)], "REGEN-CONSERVATIVE-FIRST"),
        ([(PT, NONE, 8), (ib.Treatment.MEDICATION, GOOD, 4)], "REGEN-CONSERVATIVE-FIRST"),
        ([(PT, NONE, 8), (ib.Treatment.SURGERY, GOOD, None)], "REGEN-DISCUSS"),
    ],
)
def test_regenerative_treatment_is_discussed_only_after_an_adequate_exercise_trial(
    treatments: list[tuple[ib.Treatment, ib.TreatmentOutcome, int | None]], expected: str
) -> None:
    outcome = triage(form(conditions=[ib.Condition.DEGENERATIVE_DISC_DISEASE], treatments=treatments), TODAY)
    assert outcome.reasons[0].code == expected


@pytest.mark.parametrize(
    "structural",
    [
        {"conditions": [ib.Condition.DEGENERATIVE_DISC_DISEASE, ib.Condition.SPINAL_STENOSIS]},
        {"conditions": [ib.Condition.DEGENERATIVE_DISC_DISEASE, ib.Condition.COMPRESSION_FRACTURE]},
        {"conditions": [ib.Condition.HERNIATED_DISC], "radiates_to": [ib.RadiatesTo.LEFT_LEG]},
        {"conditions": [ib.Condition.HERNIATED_DISC], "symptoms": [ib.Symptom.RADIATING_PAIN]},
    ],
)
def test_stenosis_fracture_and_radicular_pain_get_a_spinal_opinion_not_stem_cells(structural: dict) -> None:
    outcome = triage(form(treatments=[(PT, NONE, 8)], **structural), TODAY)
    assert "REGEN-DISCUSS" not in codes(outcome)
    assert "SPINAL-OPINION" in codes(outcome)


def test_an_unsure_cancer_history_is_not_a_regenerative_candidate() -> None:
    outcome = triage(
        form(conditions=[ib.Condition.SPONDYLOSIS], treatments=[(PT, NONE, 8)], history_of_cancer="unsure"),
        TODAY,
    )
    assert routed(outcome)[:2] == ("clinician_review", "urgent")
    assert "REGEN-DISCUSS" not in codes(outcome)


def test_axial_spondyloarthritis_is_a_routine_rheumatology_hold() -> None:
    outcome = triage(
        form(
            birth_date=years_ago(30),
            symptoms=[ib.Symptom.NIGHT_WAKING, ib.Symptom.IMPROVES_WITH_EXERCISE, ib.Symptom.NSAID_RESPONSE],
        ),
        TODAY,
    )
    assert routed(outcome) == ("clinician_review", "routine", "AXSPA")
    assert "onset before 35" in outcome.reasons[0].text


def test_onset_age_comes_from_the_onset_date() -> None:
    features = [
        ib.Symptom.NIGHT_WAKING,
        ib.Symptom.IMPROVES_WITH_EXERCISE,
        ib.Symptom.NSAID_RESPONSE,
        ib.Symptom.ALTERNATING_BUTTOCK_PAIN,
    ]
    # 46 today, pain began at 44 (two years ago): still below 45 at onset.
    outcome = triage(form(birth_date=years_ago(46), onset_date=years_ago(2), symptoms=features), TODAY)
    assert outcome.reasons[0].code == "AXSPA"


# --- The clinic's date: nothing goes below 0 ---------------------------------------------------


def test_a_procedure_dated_tomorrow_is_zero_days_old_recent_and_early() -> None:
    tomorrow = TODAY + datetime.timedelta(days=1)
    assert routed(triage(form(procedure_on=tomorrow), TODAY))[2] == "RECOVERY"
    outcome = triage(form(procedure_on=tomorrow, fever_or_chills="yes", limb_weakness="unsure"), TODAY)
    assert codes(outcome)[:2] == ["POST-SPINAL", "INF-1"]


def test_an_onset_dated_tomorrow_gives_zero_weeks() -> None:
    outcome = triage(form(onset_date=TODAY + datetime.timedelta(days=1), limb_weakness="yes"), TODAY)
    assert outcome.reasons[0].code == "NEURO-NEW"


# --- How the rules combine ---------------------------------------------------------------------


def test_the_rules_are_listed_in_urgency_order_so_the_first_match_decides() -> None:
    ranks = [urgency(rule.destination, rule.priority) for rule in RULES]
    assert ranks == sorted(ranks)


def test_the_most_urgent_match_decides_and_every_match_is_listed_in_rule_order() -> None:
    outcome = triage(
        form(
            conditions=[ib.Condition.DEGENERATIVE_DISC_DISEASE],
            treatments=[(PT, PARTIAL, 8)],
            procedure_on=TODAY - datetime.timedelta(days=20),
            complications=[ib.Complication.INFECTION],
            fever_or_chills="yes",
            bladder_or_bowel_dysfunction="yes",
        ),
        TODAY,
    )
    assert codes(outcome) == ["CES-1", "POST-INF", "INF-1", "INF-2", "REGEN-DISCUSS"]
    assert routed(outcome)[:2] == ("urgent_care", "stat")


def test_acute_is_silenced_by_a_hold_and_default_only_when_nothing_matched() -> None:
    assert codes(triage(form(weeks=2, risk_factors=[ib.RiskFactor.RECENT_TRAUMA]), TODAY)) == ["TRAUMA"]
    assert codes(triage(form(), TODAY)) == ["DEFAULT"]
    assert codes(triage(form(weeks=2, birth_date=years_ago(58)), TODAY)) == ["AGE50", "ACUTE"]


def test_urgent_texts_quote_the_urgent_service_level_in_force() -> None:
    outcome = triage(form(fever_or_chills="yes"), TODAY, TriageThresholds(urgent_hours=12))
    assert outcome.reasons[0].text == "Fever with back pain needs assessment within 12 hours."


# --- The published ruleset ----------------------------------------------------------------------

V2_CODES = [
    "CES-1", "CES-2", "CES-BILAT", "CES-UNSURE", "POST-SPINAL", "MSCC", "POST-INF", "INF-1", "NEURO-NEW",
    "NEURO", "INF-2", "CANCER", "WEIGHT", "WORSE", "FRACTURE", "POST-NERVE", "POST-ALLERGY",
    "CANCER-HX", "UNSURE", "BILAT", "TRAUMA", "SEVERE",
    "AXSPA", "SPINAL-OPINION",
    "RECOVERY", "REGEN-DISCUSS",
    "REGEN-CONSERVATIVE-FIRST", "AGE50", "ACUTE", "DEFAULT",
]  # fmt: skip


def test_the_document_lists_the_30_rules_in_order_with_what_changed_from_v1() -> None:
    document = json.loads(msgspec.json.encode(rules_document()))
    assert document["ruleset_version"] == "v2"
    assert [rule["code"] for rule in document["rules"]] == V2_CODES
    assert all(rule["text"] and rule["source"] and "{" not in rule["text"] for rule in document["rules"])
    assert document["changes_from"] == "v1"
    changes = {(c["change"], c["code"]) for c in document["changes"]}
    assert ("removed", "REGEN") in changes and ("removed", "REGEN-CANCER") in changes
    assert ("added", "CES-UNSURE") in changes and ("changed", "CANCER") in changes
    added = {c.code for c in CHANGES_FROM_V1 if c.change == "added"} - {"AMEND-HOLD"}
    v1_codes = {rule.code for rule in rules_document("v1").rules}
    assert added == set(V2_CODES) - v1_codes
    assert {c.code for c in CHANGES_FROM_V1 if c.change == "removed"} == v1_codes - set(V2_CODES)
    assert all(c.summary for c in CHANGES_FROM_V1)


def test_the_v1_document_is_still_served_unchanged() -> None:
    document = rules_document("v1")
    assert document.ruleset_version == "v1"
    assert "REGEN" in [rule.code for rule in document.rules]
    assert document.changes == [] and document.changes_from is None


# --- Invariants, exhaustively -----------------------------------------------------------------


@dataclass(frozen=True)
class Base:
    name: str
    intake: ib.IntakeBody
    pattern: bool
    """Whether the form shows the metastasis pattern (new pain, worsening, upper spine, night
    pain or severe), stated from the form, not computed by the code under test."""


BASES = [
    Base("chronic quiet", form(), pattern=False),
    Base("acute", form(weeks=1), pattern=True),
    Base(
        "regenerative candidate",
        form(conditions=[ib.Condition.DEGENERATIVE_DISC_DISEASE], treatments=[(PT, PARTIAL, 8)]),
        pattern=False,
    ),
    Base(
        "radicular after physio",
        form(
            conditions=[ib.Condition.HERNIATED_DISC],
            radiates_to=[ib.RadiatesTo.LEFT_LEG],
            treatments=[(PT, NONE, 8)],
        ),
        pattern=False,
    ),
    Base(
        "both legs, chronic",
        form(
            radiates_to=[ib.RadiatesTo.LEFT_LEG, ib.RadiatesTo.RIGHT_LEG],
            conditions=[ib.Condition.SPINAL_STENOSIS],
        ),
        pattern=False,
    ),
    Base("early procedure", form(procedure_on=TODAY - datetime.timedelta(days=7)), pattern=False),
    Base("procedure 2 months ago", form(procedure_on=TODAY - datetime.timedelta(days=60)), pattern=False),
    Base("thoracic", form(regions=[ib.Region.UPPER_BACK]), pattern=True),
    Base("night pain", form(symptoms=[ib.Symptom.NIGHT_PAIN]), pattern=True),
    Base(
        "severe worsening, nothing tried", form(weeks=2, intensity=8, trend=ib.Trend.WORSENING), pattern=True
    ),
    Base(
        "severe worsening after medication",
        form(intensity=9, trend=ib.Trend.WORSENING, treatments=[(ib.Treatment.MEDICATION, NONE, 4)]),
        pattern=True,
    ),
    Base("aged 75, new pain", form(weeks=3, birth_date=years_ago(75)), pattern=True),
    Base("immunosuppressed", form(risk_factors=[ib.RiskFactor.IMMUNOSUPPRESSION]), pattern=False),
    Base(
        "inflammatory",
        form(
            birth_date=years_ago(30),
            symptoms=[ib.Symptom.NIGHT_WAKING, ib.Symptom.NSAID_RESPONSE, ib.Symptom.IMPROVES_WITH_EXERCISE],
        ),
        pattern=False,
    ),
    Base(
        "injects drugs, trauma",
        form(risk_factors=[ib.RiskFactor.IV_DRUG_USE, ib.RiskFactor.RECENT_TRAUMA]),
        pattern=False,
    ),
]
ANSWERS = (NO, UNSURE, YES)
COMBINATIONS = list(itertools.product(ANSWERS, repeat=len(RED_FLAG_QUESTIONS)))
HOLD_URGENT = urgency("clinician_review", "urgent")


def _with_answers(intake: ib.IntakeBody, answers: tuple[ib.RedFlagAnswer, ...]) -> ib.IntakeBody:
    return msgspec.structs.replace(
        intake, red_flags=ib.RedFlags(**dict(zip(RED_FLAG_QUESTIONS, answers, strict=True)))
    )


@pytest.mark.parametrize("base", BASES, ids=lambda b: b.name)
def test_the_five_invariants_hold_for_every_red_flag_answer_combination(base: Base) -> None:
    assert len(COMBINATIONS) == 3**8
    assert ib.check_intake(base.intake, TODAY) == []
    answer = dict(zip(RED_FLAG_QUESTIONS, range(8), strict=True))
    outcomes: dict[tuple[ib.RedFlagAnswer, ...], TriageOutcome] = {}
    for combo in COMBINATIONS:
        outcome = triage(_with_answers(base.intake, combo), TODAY)
        outcomes[combo] = outcome
        rank = urgency(outcome.destination, outcome.priority)
        yes = {q for q, a in zip(RED_FLAG_QUESTIONS, combo, strict=True) if a is YES}
        # 5. A reason, the deciding one first, the version.
        first = RULE[outcome.reasons[0].code]
        assert (first.destination, first.priority) == (outcome.destination, outcome.priority), combo
        assert all(urgency(RULE[r.code].destination, RULE[r.code].priority) >= rank for r in outcome.reasons)
        assert outcome.ruleset_version == "v2"
        # 1. Any yes: urgent care (a cancer history without the pattern: a clinician within 24 h).
        if yes - {"history_of_cancer"}:
            assert outcome.destination == "urgent_care", (combo, codes(outcome))
        # 4. A cancer history: at least clinician review, urgent; with the pattern urgent care.
        if "history_of_cancer" in yes:
            assert rank <= HOLD_URGENT, (combo, codes(outcome))
            if base.pattern:
                assert outcome.destination == "urgent_care", (combo, codes(outcome))
        # 3. Unsure about bladder or saddle: urgent care now.
        if UNSURE in (combo[answer["bladder_or_bowel_dysfunction"]], combo[answer["saddle_numbness"]]):
            assert (outcome.destination, outcome.priority) == ("urgent_care", "stat"), combo
    # 2. For any one question, unsure is never less urgent than no, nor yes than unsure.
    for combo, outcome in outcomes.items():
        for i, answered in enumerate(combo):
            if answered is YES:
                continue
            raised = (*combo[:i], UNSURE if answered is NO else YES, *combo[i + 1 :])
            higher = outcomes[raised]
            assert urgency(higher.destination, higher.priority) <= urgency(
                outcome.destination, outcome.priority
            ), (
                RED_FLAG_QUESTIONS[i],
                combo,
                codes(outcome),
                codes(higher),
            )


# --- Every valid form -------------------------------------------------------------------------


@settings(max_examples=200)
@given(intake=intakes(TODAY))
def test_every_valid_intake_is_decided_by_its_first_reason_deterministically(intake: ib.IntakeBody) -> None:
    outcome = triage(intake, TODAY)
    found = codes(outcome)
    assert found and len(found) == len(set(found))
    assert (RULE[found[0]].destination, RULE[found[0]].priority) == (outcome.destination, outcome.priority)
    assert found == [rule.code for rule in RULES if rule.code in found], "reasons in rule order"
    assert "DEFAULT" not in found or found == ["DEFAULT"]
    assert triage(ib.decode_intake(msgspec.json.encode(intake)), TODAY) == outcome
