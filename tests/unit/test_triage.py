"""Ruleset v1 rule by rule, at the boundaries it set, plus its safety properties: v1 is kept as it
ran, so the referrals it made keep their explanation."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.contracts import intake_body as ib
from services.referral.triage import v1 as triage_module
from services.referral.triage.v1 import (
    RULES,
    RULESET_VERSION,
    Destination,
    Priority,
    TriageOutcome,
    TriageThresholds,
    rules_document,
    triage,
)
from tests.strategies import RED_FLAG_QUESTIONS, intakes
from tests.unit.forms import quiet_form

TODAY = datetime.date(2026, 5, 15)
ADULT = datetime.date(1975, 6, 15)

PT_PARTIAL = (ib.Treatment.PHYSICAL_THERAPY, ib.TreatmentOutcome.PARTIAL_RELIEF)
PT_NONE = (ib.Treatment.PHYSICAL_THERAPY, ib.TreatmentOutcome.NO_RELIEF)


def make_intake(
    *,
    duration_weeks: int | None = 20,
    birth_date: datetime.date = ADULT,
    treatments: Iterable[tuple[ib.Treatment, ib.TreatmentOutcome]] = (),
    procedure_days_ago: int | None = None,
    **changes: Any,
) -> ib.IntakeBody:
    """A quiet intake (every red flag `no`, 20 weeks, 5/10, stable) with the given changes, as
    `quiet_form` takes them: `make_intake(saddle_numbness="yes")`. Giving `onset_date` drops the
    default `duration_weeks`, as the form allows only one."""
    return quiet_form(
        weeks=duration_weeks,
        birth_date=birth_date,
        treatments=[(t, o, None) for t, o in treatments],
        procedure_on=None if procedure_days_ago is None else TODAY - datetime.timedelta(procedure_days_ago),
        **changes,
    )


def codes(outcome: TriageOutcome) -> list[str]:
    return [reason.code for reason in outcome.reasons]


def routed(outcome: TriageOutcome) -> tuple[str, str]:
    return outcome.destination, outcome.priority


# --- Duration: 12 weeks is not chronic, 13 is ---------------------------------------------------


@pytest.mark.parametrize(
    ("weeks", "route", "code"),
    [
        pytest.param(
            12, ("pain_management", "routine"), "ACUTE", id="12 weeks: conservative care comes first"
        ),
        pytest.param(13, ("regenerative_medicine", "routine"), "REGEN", id="13 weeks: regenerative medicine"),
    ],
)
def test_disc_pain_after_failed_physio_is_chronic_from_13_weeks(
    weeks: int, route: tuple[str, str], code: str
) -> None:
    intake = make_intake(
        duration_weeks=weeks, conditions=[ib.Condition.DEGENERATIVE_DISC_DISEASE], treatments=[PT_NONE]
    )
    outcome = triage(intake, TODAY)
    assert routed(outcome) == route
    assert codes(outcome) == [code]


@pytest.mark.parametrize(
    ("days_since_onset", "expected_code"),
    [(90, "ACUTE"), (91, "REGEN")],  # 12 weeks 6 days is 12 whole weeks; 91 days is 13
)
def test_duration_from_onset_date_counts_whole_weeks(days_since_onset: int, expected_code: str) -> None:
    intake = make_intake(
        onset_date=TODAY - datetime.timedelta(days=days_since_onset),
        conditions=[ib.Condition.HERNIATED_DISC],
        treatments=[PT_PARTIAL],
    )
    assert codes(triage(intake, TODAY)) == [expected_code]


def test_intake_without_any_duration_is_read_as_new_pain_so_cancer_history_is_not_missed() -> None:
    # check_intake refuses such a body; triage must still not fail nor drop the red flag.
    intake = make_intake(duration_weeks=None, history_of_cancer="yes")
    outcome = triage(intake, TODAY)
    assert routed(outcome) == ("urgent_care", "urgent")
    assert "CANCER" in codes(outcome)


def test_a_custom_chronic_threshold_changes_routing_and_the_text_quotes_it() -> None:
    intake = make_intake(duration_weeks=8, conditions=[ib.Condition.SPONDYLOSIS], treatments=[PT_PARTIAL])
    assert codes(triage(intake, TODAY)) == ["ACUTE"]
    outcome = triage(intake, TODAY, TriageThresholds(chronic_weeks=6))
    assert codes(outcome) == ["REGEN"]
    assert "more than 6 weeks" in outcome.reasons[0].text


# --- Urgent care, stat ---------------------------------------------------------------------------


def test_bladder_dysfunction_is_cauda_equina_and_goes_to_urgent_care_now() -> None:
    outcome = triage(make_intake(bladder_or_bowel_dysfunction="yes"), TODAY)
    assert routed(outcome) == ("urgent_care", "stat")
    assert codes(outcome)[0] == "CES-1"
    assert "cauda equina" in outcome.reasons[0].text


def test_saddle_numbness_goes_to_urgent_care_now() -> None:
    outcome = triage(make_intake(saddle_numbness="yes"), TODAY)
    assert routed(outcome) == ("urgent_care", "stat")
    assert codes(outcome) == ["CES-2"]


@pytest.mark.parametrize("deficit", ["limb_weakness", "numbness_or_tingling"])
def test_cancer_history_with_a_neurological_deficit_is_possible_cord_compression(deficit: str) -> None:
    outcome = triage(make_intake(history_of_cancer="yes", **{deficit: "yes"}), TODAY)
    assert routed(outcome) == ("urgent_care", "stat")
    assert codes(outcome)[0] == "MSCC"
    assert "NEURO" in codes(outcome)


def test_weakness_without_cancer_history_is_not_cord_compression() -> None:
    outcome = triage(make_intake(limb_weakness="yes"), TODAY)
    assert routed(outcome) == ("urgent_care", "urgent")
    assert "MSCC" not in codes(outcome)


def test_fever_in_someone_who_injects_drugs_is_possible_spinal_infection() -> None:
    outcome = triage(make_intake(fever_or_chills="yes", risk_factors=[ib.RiskFactor.IV_DRUG_USE]), TODAY)
    assert routed(outcome) == ("urgent_care", "stat")
    assert codes(outcome) == ["INF-1", "INF-2"]


@pytest.mark.parametrize(
    ("days_ago", "expected"),
    [(0, ("urgent_care", "stat")), (182, ("urgent_care", "stat")), (183, ("urgent_care", "urgent"))],
)
def test_fever_within_26_weeks_of_a_procedure_is_an_emergency(
    days_ago: int, expected: tuple[str, str]
) -> None:
    outcome = triage(make_intake(fever_or_chills="yes", procedure_days_ago=days_ago), TODAY)
    assert routed(outcome) == expected
    assert ("INF-1" in codes(outcome)) is (expected[1] == "stat")
    assert "INF-2" in codes(outcome)


def test_infection_after_a_procedure_goes_to_urgent_care_now_even_when_the_procedure_is_old() -> None:
    outcome = triage(make_intake(procedure_days_ago=400, complications=[ib.Complication.INFECTION]), TODAY)
    assert routed(outcome) == ("urgent_care", "stat")
    assert codes(outcome)[0] == "POST-INF"


# --- Urgent care, urgent -------------------------------------------------------------------------


URGENT = ("urgent_care", "urgent")


@pytest.mark.parametrize(
    ("changes", "route", "reason_codes"),
    [
        pytest.param(
            {"numbness_or_tingling": "yes"}, URGENT, ["NEURO"], id="numbness needs evaluation within a day"
        ),
        pytest.param(
            {"limb_weakness": "yes"}, URGENT, ["NEURO"], id="weakness needs evaluation within a day"
        ),
        pytest.param(
            {"fever_or_chills": "yes"}, URGENT, ["INF-2"], id="fever alone is urgent care within a day"
        ),
        pytest.param(
            {"history_of_cancer": "yes", "duration_weeks": 12},
            URGENT,
            ["CANCER"],
            id="cancer history, new pain",
        ),
        pytest.param(
            {"history_of_cancer": "yes", "duration_weeks": 13},
            ("pain_management", "routine"),
            ["DEFAULT"],
            id="cancer history with chronic stable pain is not a red flag",
        ),
        pytest.param({"unexplained_weight_loss": "yes"}, URGENT, ["WEIGHT"], id="unexplained weight loss"),
        pytest.param(
            {"worsening_despite_treatment": "yes"}, URGENT, ["WORSE"], id="worsening despite treatment"
        ),
        pytest.param(
            {"procedure_days_ago": 10, "complications": [ib.Complication.NERVE_DAMAGE]},
            URGENT,
            ["POST-NERVE"],
            id="nerve damage after a procedure",
        ),
        pytest.param(
            {"procedure_days_ago": 10, "complications": [ib.Complication.ALLERGIC_REACTION]},
            URGENT,
            ["POST-ALLERGY"],
            id="allergic reaction after a procedure",
        ),
    ],
)
def test_urgent_red_flags_go_to_urgent_care_within_a_day(
    changes: dict[str, Any], route: tuple[str, str], reason_codes: list[str]
) -> None:
    outcome = triage(make_intake(**changes), TODAY)
    assert routed(outcome) == route
    assert codes(outcome) == reason_codes


def test_cancer_history_with_chronic_worsening_pain_is_urgent() -> None:
    outcome = triage(make_intake(history_of_cancer="yes", duration_weeks=40, trend=ib.Trend.WORSENING), TODAY)
    assert codes(outcome) == ["CANCER"]


@pytest.mark.parametrize(("intensity", "is_worse"), [(6, False), (7, True)])
def test_worsening_pain_after_treatment_is_urgent_from_intensity_7(intensity: int, is_worse: bool) -> None:
    intake = make_intake(
        duration_weeks=20, intensity=intensity, trend=ib.Trend.WORSENING, treatments=[PT_PARTIAL]
    )
    outcome = triage(intake, TODAY)
    assert ("WORSE" in codes(outcome)) is is_worse
    assert outcome.destination == ("urgent_care" if is_worse else "pain_management")


def test_severe_worsening_pain_with_no_treatment_tried_is_not_worse_despite_treatment() -> None:
    outcome = triage(make_intake(intensity=10, trend=ib.Trend.WORSENING), TODAY)
    assert "WORSE" not in codes(outcome)


def test_surgery_counts_as_treatment_for_worse_despite_treatment() -> None:
    intake = make_intake(
        intensity=8,
        trend=ib.Trend.WORSENING,
        treatments=[(ib.Treatment.SURGERY, ib.TreatmentOutcome.GOOD_RELIEF)],
    )
    assert codes(triage(intake, TODAY)) == ["WORSE"]


def test_known_compression_fracture_with_new_pain_is_urgent() -> None:
    outcome = triage(make_intake(duration_weeks=2, conditions=[ib.Condition.COMPRESSION_FRACTURE]), TODAY)
    assert routed(outcome) == ("urgent_care", "urgent")
    assert codes(outcome)[0] == "FRACTURE"


def test_new_fracture_pain_is_not_also_told_conservative_care_first() -> None:
    """ACUTE ("conservative care first") must not sit beside an urgent-care red-flag pattern."""
    fracture = triage(make_intake(duration_weeks=1, conditions=[ib.Condition.COMPRESSION_FRACTURE]), TODAY)
    plain = triage(make_intake(duration_weeks=1), TODAY)
    assert codes(fracture) == ["FRACTURE"]
    assert codes(plain) == ["ACUTE"]


def test_old_compression_fracture_with_chronic_pain_is_not_a_new_fracture() -> None:
    outcome = triage(make_intake(duration_weeks=30, conditions=[ib.Condition.COMPRESSION_FRACTURE]), TODAY)
    assert "FRACTURE" not in codes(outcome)


@pytest.mark.parametrize(
    ("conditions", "risks", "is_fracture"),
    [
        ([ib.Condition.OSTEOPOROSIS], [ib.RiskFactor.RECENT_TRAUMA], True),
        ([], [ib.RiskFactor.LONG_TERM_CORTICOSTEROIDS, ib.RiskFactor.RECENT_TRAUMA], True),
        ([ib.Condition.OSTEOPOROSIS], [ib.RiskFactor.LONG_TERM_CORTICOSTEROIDS], False),
        ([], [ib.RiskFactor.RECENT_TRAUMA], False),
    ],
)
def test_fragile_bone_with_recent_trauma_is_a_possible_fracture(
    conditions: list[ib.Condition], risks: list[ib.RiskFactor], is_fracture: bool
) -> None:
    outcome = triage(make_intake(duration_weeks=30, conditions=conditions, risk_factors=risks), TODAY)
    assert ("FRACTURE" in codes(outcome)) is is_fracture


# --- Clinician review ----------------------------------------------------------------------------


def test_unsure_bladder_answer_goes_to_clinician_review() -> None:
    outcome = triage(make_intake(bladder_or_bowel_dysfunction="unsure"), TODAY)
    assert routed(outcome) == ("clinician_review", "urgent")
    assert codes(outcome) == ["UNSURE"]
    assert "Unsure about: bladder or bowel dysfunction." in outcome.reasons[0].text


@pytest.mark.parametrize("question", RED_FLAG_QUESTIONS)
def test_any_unsure_red_flag_answer_holds_the_intake_for_a_clinician(question: str) -> None:
    outcome = triage(
        make_intake(
            duration_weeks=30,
            conditions=[ib.Condition.HERNIATED_DISC],
            treatments=[PT_NONE],
            **{question: "unsure"},
        ),
        TODAY,
    )
    assert routed(outcome) == ("clinician_review", "urgent")
    assert codes(outcome)[0] == "UNSURE"


def test_unsure_reason_names_every_unsure_question() -> None:
    outcome = triage(make_intake(saddle_numbness="unsure", fever_or_chills="unsure"), TODAY)
    assert outcome.reasons[0].text.endswith("Unsure about: saddle numbness, fever or chills.")


def test_a_yes_red_flag_outranks_an_unsure_one_and_both_are_shown() -> None:
    outcome = triage(make_intake(saddle_numbness="yes", limb_weakness="unsure"), TODAY)
    assert routed(outcome) == ("urgent_care", "stat")
    assert codes(outcome) == ["CES-2", "UNSURE"]


# Born 1986-01-10: pain of 20 weeks began at 39, so the onset-before-35 feature does not count.
AXSPA_BIRTH = datetime.date(1986, 1, 10)
THREE_SYMPTOMS = (
    ib.Symptom.NIGHT_WAKING,
    ib.Symptom.ALTERNATING_BUTTOCK_PAIN,
    ib.Symptom.IMPROVES_WITH_EXERCISE,
)


def test_three_inflammatory_features_are_not_enough_to_suspect_axial_spondyloarthritis() -> None:
    outcome = triage(make_intake(birth_date=AXSPA_BIRTH, duration_weeks=20, symptoms=THREE_SYMPTOMS), TODAY)
    assert "AXSPA" not in codes(outcome)
    assert routed(outcome) == ("pain_management", "routine")


def test_four_inflammatory_features_suggest_axial_spondyloarthritis_and_rheumatology() -> None:
    outcome = triage(
        make_intake(
            birth_date=AXSPA_BIRTH,
            duration_weeks=20,
            symptoms=THREE_SYMPTOMS,
            conditions=[ib.Condition.PSORIASIS],
        ),
        TODAY,
    )
    assert routed(outcome) == ("clinician_review", "urgent")
    assert codes(outcome) == ["AXSPA"]
    assert "Consider rheumatology" in outcome.reasons[0].text
    assert "psoriasis" in outcome.reasons[0].text


def test_family_history_and_nsaid_response_count_as_inflammatory_features() -> None:
    outcome = triage(
        make_intake(
            birth_date=AXSPA_BIRTH,
            duration_weeks=20,
            symptoms=[ib.Symptom.NIGHT_WAKING, ib.Symptom.NSAID_RESPONSE, ib.Symptom.IMPROVES_WITH_EXERCISE],
            risk_factors=[ib.RiskFactor.FAMILY_HISTORY_SPONDYLOARTHRITIS],
        ),
        TODAY,
    )
    assert codes(outcome) == ["AXSPA"]


def test_inflammatory_pattern_of_12_weeks_is_not_yet_axial_spondyloarthritis() -> None:
    outcome = triage(
        make_intake(
            birth_date=AXSPA_BIRTH, duration_weeks=12, symptoms=[*THREE_SYMPTOMS, ib.Symptom.NSAID_RESPONSE]
        ),
        TODAY,
    )
    assert "AXSPA" not in codes(outcome)


@pytest.mark.parametrize(
    ("onset_date", "is_axspa"),
    [
        (datetime.date(2025, 3, 9), True),  # the day before the 35th birthday: onset age 34
        (datetime.date(2025, 3, 10), False),  # the 35th birthday: onset age 35
    ],
)
def test_pain_beginning_before_35_counts_as_an_inflammatory_feature(
    onset_date: datetime.date, is_axspa: bool
) -> None:
    intake = make_intake(
        birth_date=datetime.date(1990, 3, 10), onset_date=onset_date, symptoms=THREE_SYMPTOMS
    )
    assert ("AXSPA" in codes(triage(intake, TODAY))) is is_axspa


@pytest.mark.parametrize(
    ("birth_date", "is_axspa"),
    [
        # 20 weeks before TODAY is 2025-12-26: born 1981-12-26 means onset at 44, 1980-12-26 at 45.
        (datetime.date(1981, 12, 26), True),
        (datetime.date(1980, 12, 26), False),
    ],
)
def test_axial_spondyloarthritis_needs_pain_that_began_before_45(
    birth_date: datetime.date, is_axspa: bool
) -> None:
    four = [*THREE_SYMPTOMS, ib.Symptom.NSAID_RESPONSE]
    intake = make_intake(birth_date=birth_date, duration_weeks=20, symptoms=four)
    assert ("AXSPA" in codes(triage(intake, TODAY))) is is_axspa


# --- Regenerative medicine and its near misses --------------------------------------------------


@pytest.mark.parametrize(
    "condition",
    [
        ib.Condition.DEGENERATIVE_DISC_DISEASE,
        ib.Condition.HERNIATED_DISC,
        ib.Condition.OSTEOARTHRITIS,
        ib.Condition.SPONDYLOSIS,
    ],
)
def test_chronic_qualifying_condition_after_conservative_care_fell_short_is_regenerative(
    condition: ib.Condition,
) -> None:
    outcome = triage(make_intake(duration_weeks=30, conditions=[condition], treatments=[PT_PARTIAL]), TODAY)
    assert routed(outcome) == ("regenerative_medicine", "routine")
    assert codes(outcome) == ["REGEN"]


def test_chronic_stenosis_is_not_a_regenerative_condition() -> None:
    outcome = triage(
        make_intake(duration_weeks=30, conditions=[ib.Condition.SPINAL_STENOSIS], treatments=[PT_NONE]),
        TODAY,
    )
    assert codes(outcome) == ["DEFAULT"]


def test_cancer_history_keeps_a_regenerative_candidate_in_pain_management() -> None:
    outcome = triage(
        make_intake(
            duration_weeks=40,
            trend=ib.Trend.IMPROVING,
            conditions=[ib.Condition.DEGENERATIVE_DISC_DISEASE],
            treatments=[PT_PARTIAL],
            history_of_cancer="yes",
        ),
        TODAY,
    )
    assert routed(outcome) == ("pain_management", "routine")
    assert codes(outcome) == ["REGEN-CANCER"]


@pytest.mark.parametrize(
    "treatments",
    [
        [],
        [(ib.Treatment.PHYSICAL_THERAPY, ib.TreatmentOutcome.GOOD_RELIEF)],
        [(ib.Treatment.SURGERY, ib.TreatmentOutcome.NO_RELIEF)],
    ],
    ids=["nothing-tried", "physio-helped", "surgery-is-not-conservative"],
)
def test_qualifying_condition_without_failed_conservative_care_gets_conservative_care_first(
    treatments: list[tuple[ib.Treatment, ib.TreatmentOutcome]],
) -> None:
    outcome = triage(
        make_intake(duration_weeks=52, conditions=[ib.Condition.OSTEOARTHRITIS], treatments=treatments),
        TODAY,
    )
    assert routed(outcome) == ("pain_management", "routine")
    assert codes(outcome) == ["REGEN-CONSERVATIVE-FIRST"]


@pytest.mark.parametrize(("days_ago", "is_recovery"), [(0, True), (182, True), (183, False)])
def test_uneventful_procedure_within_26_weeks_is_followed_up_by_regenerative_medicine(
    days_ago: int, is_recovery: bool
) -> None:
    outcome = triage(make_intake(duration_weeks=30, procedure_days_ago=days_ago), TODAY)
    if is_recovery:
        assert routed(outcome) == ("regenerative_medicine", "routine")
        assert codes(outcome) == ["RECOVERY"]
    else:
        assert codes(outcome) == ["DEFAULT"]


def test_procedure_with_a_complication_is_not_an_uneventful_recovery() -> None:
    outcome = triage(make_intake(procedure_days_ago=7, complications=[ib.Complication.NERVE_DAMAGE]), TODAY)
    assert "RECOVERY" not in codes(outcome)


# --- Pain management -----------------------------------------------------------------------------


def test_new_pain_without_red_flags_gets_conservative_care_first() -> None:
    outcome = triage(make_intake(duration_weeks=1, intensity=6), TODAY)
    assert routed(outcome) == ("pain_management", "routine")
    assert codes(outcome) == ["ACUTE"]


def test_new_pain_with_an_unsure_answer_is_not_called_red_flag_free() -> None:
    outcome = triage(make_intake(duration_weeks=1, history_of_cancer="unsure"), TODAY)
    assert codes(outcome) == ["UNSURE"]


def test_chronic_pain_with_nothing_specific_goes_to_pain_management_by_default() -> None:
    outcome = triage(
        make_intake(duration_weeks=20, risk_factors=[ib.RiskFactor.OBESITY, ib.RiskFactor.STRESS]), TODAY
    )
    assert routed(outcome) == ("pain_management", "routine")
    assert codes(outcome) == ["DEFAULT"]


# --- How the rules combine -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason_codes"),
    [
        pytest.param(
            {
                "duration_weeks": 34,
                "conditions": [ib.Condition.DEGENERATIVE_DISC_DISEASE],
                "treatments": [PT_PARTIAL],
                "bladder_or_bowel_dysfunction": "yes",
            },
            ["CES-1", "REGEN"],
            id="a red flag decides but the degenerative disc finding is still shown",
        ),
        pytest.param(
            {
                "duration_weeks": 30,
                "conditions": [ib.Condition.HERNIATED_DISC],
                "treatments": [PT_NONE],
                "procedure_days_ago": 14,
                "limb_weakness": "yes",
                "unexplained_weight_loss": "unsure",
                "saddle_numbness": "yes",
            },
            ["CES-2", "NEURO", "UNSURE", "REGEN", "RECOVERY"],
            id="every matched rule is listed, most severe first",
        ),
    ],
)
def test_the_most_severe_rule_decides_and_every_matched_rule_is_listed(
    changes: dict[str, Any], reason_codes: list[str]
) -> None:
    outcome = triage(make_intake(**changes), TODAY)
    assert routed(outcome) == ("urgent_care", "stat")
    assert codes(outcome) == reason_codes


def test_precedence_comes_from_severity_not_from_the_order_rules_are_declared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(triage_module, "RULES", tuple(reversed(RULES)))
    outcome = triage(
        make_intake(
            duration_weeks=30,
            conditions=[ib.Condition.HERNIATED_DISC],
            treatments=[PT_NONE],
            fever_or_chills="unsure",
            bladder_or_bowel_dysfunction="yes",
        ),
        TODAY,
    )
    assert routed(outcome) == ("urgent_care", "stat")
    assert codes(outcome) == ["CES-1", "UNSURE", "REGEN"]


def test_outcome_carries_the_ruleset_version_and_each_reason_its_source() -> None:
    outcome = triage(make_intake(), TODAY)
    assert outcome.ruleset_version == RULESET_VERSION == "v1"
    assert all(reason.source and reason.text for reason in outcome.reasons)


def test_outcome_encodes_as_the_preview_json() -> None:
    outcome = triage(make_intake(saddle_numbness="yes"), TODAY)
    payload = json.loads(msgspec.json.encode(outcome))
    assert payload["destination"] == "urgent_care"
    assert payload["priority"] == "stat"
    assert payload["ruleset_version"] == "v1"
    assert payload["reasons"][0]["code"] == "CES-2"
    assert set(payload["reasons"][0]) == {"code", "text", "source"}


# --- The published ruleset -----------------------------------------------------------------------


TRIAGE_MD_CODES = [
    "CES-1", "CES-2", "MSCC", "INF-1", "POST-INF",
    "NEURO", "INF-2", "CANCER", "WEIGHT", "WORSE", "POST-NERVE", "POST-ALLERGY", "FRACTURE",
    "UNSURE", "AXSPA",
    "REGEN", "RECOVERY",
    "REGEN-CANCER", "REGEN-CONSERVATIVE-FIRST", "ACUTE",
    "DEFAULT",
]  # fmt: skip


def test_ruleset_has_exactly_the_rules_of_triage_md() -> None:
    assert [rule.code for rule in RULES] == TRIAGE_MD_CODES


def test_rules_document_lists_every_rule_with_plain_text_and_its_source() -> None:
    document = json.loads(msgspec.json.encode(rules_document()))
    assert document["ruleset_version"] == "v1"
    assert document["thresholds"]["chronic_weeks"] == 12
    assert document["thresholds"]["procedure_window_weeks"] == 26
    assert [rule["code"] for rule in document["rules"]] == TRIAGE_MD_CODES
    for rule in document["rules"]:
        assert rule["text"]
        assert rule["source"]
        assert "{" not in rule["text"], f"{rule['code']} has an unfilled placeholder"
    by_code = {rule["code"]: rule for rule in document["rules"]}
    assert (by_code["CES-1"]["destination"], by_code["CES-1"]["priority"]) == ("urgent_care", "stat")
    assert (by_code["UNSURE"]["destination"], by_code["UNSURE"]["priority"]) == (
        "clinician_review",
        "urgent",
    )
    assert by_code["INF-1"]["text"].count("26 weeks") == 1


def test_rules_document_quotes_the_thresholds_in_force() -> None:
    document = rules_document(TriageThresholds(chronic_weeks=10, severe_intensity=8))
    texts = {rule.code: rule.text for rule in document.rules}
    assert "more than 10 weeks" in texts["REGEN"]
    assert "8/10 or more" in texts["WORSE"]


@pytest.mark.parametrize(
    ("destination", "priority"),
    [(rule.destination, rule.priority) for rule in RULES],
    ids=[rule.code for rule in RULES],
)
def test_every_rule_routes_to_a_destination_and_priority_of_triage_md(
    destination: Destination, priority: Priority
) -> None:
    allowed = {
        Destination.URGENT_CARE: {Priority.STAT, Priority.URGENT},
        Destination.CLINICIAN_REVIEW: {Priority.URGENT},
        Destination.REGENERATIVE_MEDICINE: {Priority.ROUTINE},
        Destination.PAIN_MANAGEMENT: {Priority.ROUTINE},
    }
    assert priority in allowed[destination]


# --- Safety properties ---------------------------------------------------------------------------

NON_CANCER_QUESTIONS = [q for q in RED_FLAG_QUESTIONS if q != "history_of_cancer"]
SEVERITY = [
    ("urgent_care", "stat"),
    ("urgent_care", "urgent"),
    ("clinician_review", "urgent"),
    ("regenerative_medicine", "routine"),
    ("pain_management", "routine"),
]
RULE_BY_CODE = {rule.code: rule for rule in RULES}


def one_answered(answer: ib.RedFlagAnswer, questions: Sequence[str]) -> st.SearchStrategy[ib.IntakeBody]:
    """Valid intakes with one of `questions` answered `answer`, the other answers as drawn."""

    def answered(intake: ib.IntakeBody, question: str) -> ib.IntakeBody:
        flags = msgspec.structs.replace(intake.red_flags, **{question: answer})
        return msgspec.structs.replace(intake, red_flags=flags)

    return st.builds(answered, intakes(TODAY), st.sampled_from(questions))


@settings(max_examples=300)
@given(intake=one_answered(ib.RedFlagAnswer.YES, NON_CANCER_QUESTIONS))
def test_any_red_flag_other_than_cancer_history_answered_yes_goes_to_urgent_care(
    intake: ib.IntakeBody,
) -> None:
    assert triage(intake, TODAY).destination == "urgent_care"


@settings(max_examples=300)
@given(intake=one_answered(ib.RedFlagAnswer.UNSURE, RED_FLAG_QUESTIONS))
def test_an_unsure_answer_never_ends_in_regenerative_medicine_or_pain_management(
    intake: ib.IntakeBody,
) -> None:
    outcome = triage(intake, TODAY)
    assert outcome.destination in {"urgent_care", "clinician_review"}
    assert "UNSURE" in codes(outcome)


@settings(max_examples=200)
@given(intake=intakes(TODAY))
def test_triage_is_deterministic_and_survives_a_json_round_trip(intake: ib.IntakeBody) -> None:
    first = triage(intake, TODAY)
    assert triage(intake, TODAY) == first
    assert triage(ib.decode_intake(msgspec.json.encode(intake)), TODAY) == first


@settings(max_examples=500)
@given(intake=intakes(TODAY))
def test_every_valid_intake_is_routed_with_its_deciding_reason_first(intake: ib.IntakeBody) -> None:
    assert ib.check_intake(intake, TODAY) == []
    outcome = triage(intake, TODAY)
    found = codes(outcome)
    assert found, "a referral always says why"
    assert len(found) == len(set(found))
    deciding = RULE_BY_CODE[found[0]]
    assert (outcome.destination, outcome.priority) == (deciding.destination, deciding.priority)
    ranks = [SEVERITY.index((RULE_BY_CODE[c].destination, RULE_BY_CODE[c].priority)) for c in found]
    assert ranks == sorted(ranks)
    if "DEFAULT" in found:
        assert found == ["DEFAULT"]
