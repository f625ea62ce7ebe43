"""The intake body: what the front desk may send, and what is refused before anything is stored."""

from __future__ import annotations

import copy
import datetime
import enum
import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings

from services.common.contracts import vocabulary as words
from services.common.contracts.intake_body import IntakeBody, check_intake, decode_intake
from services.common.http.problems import FieldProblem
from tests.strategies import intake_bodies

TODAY = datetime.date(2026, 5, 15)

# The example body of API.md.
API_EXAMPLE: dict[str, Any] = {
    "patient": {
        "mrn": "MRN-0042",
        "given_name": "Ana",
        "family_name": "Silva",
        "birth_date": "1971-04-02",
        "sex": "female",
        "phone": "+1 555 0100",
        "email": "ana@example.org",
    },
    "complaint": {
        "regions": ["lower_back"],
        "onset_date": "2026-03-01",
        "intensity": 6,
        "trend": "stable",
        "radiates_to": ["left_leg"],
    },
    "symptoms": ["stiffness", "radiating_pain"],
    "conditions": ["herniated_disc"],
    "risk_factors": ["inactivity"],
    "treatments_tried": [{"treatment": "physical_therapy", "outcome": "partial_relief", "weeks": 8}],
    "red_flags": {
        "bladder_or_bowel_dysfunction": "no",
        "saddle_numbness": "no",
        "numbness_or_tingling": "no",
        "limb_weakness": "no",
        "unexplained_weight_loss": "no",
        "fever_or_chills": "no",
        "history_of_cancer": "no",
        "worsening_despite_treatment": "no",
    },
    "regenerative_procedure": None,
    "notes": "free text, at most 4000 characters",
}


def body(**changes: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """A copy of the API example; each change is a function editing the copy in place."""
    data = copy.deepcopy(API_EXAMPLE)
    for change in changes.values():
        change(data)
    return data


def decode(data: dict[str, Any]) -> IntakeBody:
    return decode_intake(json.dumps(data).encode())


def refusal(data: dict[str, Any]) -> str:
    with pytest.raises(msgspec.ValidationError) as excinfo:
        decode(data)
    return str(excinfo.value)


def names_path(message: str, path: str) -> bool:
    """msgspec ends a message with `- at `$.a.b``, and says nothing for the top level `$`."""
    return " - at " not in message if path == "$" else message.endswith(f" - at `{path}`")


# --- Vocabulary ----------------------------------------------------------------------------------


def test_api_example_is_accepted() -> None:
    intake = decode(API_EXAMPLE)
    assert intake.patient.family_name == "Silva"
    assert intake.complaint.onset_date == datetime.date(2026, 3, 1)
    assert intake.treatments_tried[0].treatment is words.Treatment.PHYSICAL_THERAPY
    assert check_intake(intake, TODAY) == []


API_VOCABULARY: dict[type[enum.StrEnum], set[str]] = {
    words.Region: {"lower_back", "upper_back", "neck"},
    words.Trend: {"improving", "stable", "worsening"},
    words.RadiatesTo: {"left_leg", "right_leg", "left_arm", "right_arm"},
    words.Symptom: {
        "stiffness", "radiating_pain", "muscle_spasms", "night_pain", "night_waking",
        "morning_stiffness", "alternating_buttock_pain", "improves_with_exercise", "nsaid_response",
    },
    words.Condition: {
        "herniated_disc", "degenerative_disc_disease", "spinal_stenosis", "compression_fracture",
        "osteoarthritis", "spondylosis", "osteoporosis", "psoriasis",
    },
    words.RiskFactor: {
        "poor_posture", "obesity", "inactivity", "stress", "anxiety", "long_term_corticosteroids",
        "iv_drug_use", "recent_trauma", "family_history_spondyloarthritis", "immunosuppression",
    },
    words.Treatment: {
        "physical_therapy", "medication", "corticosteroid_injection", "surgery", "chiropractic",
        "acupuncture", "massage", "yoga_or_pilates", "heat_or_cold", "exercise", "weight_management",
    },
    words.TreatmentOutcome: {"no_relief", "partial_relief", "good_relief"},
    words.RedFlagAnswer: {"yes", "no", "unsure"},
    words.Complication: {"infection", "nerve_damage", "allergic_reaction"},
    words.Sex: {"female", "male", "other", "unknown"},
}  # fmt: skip


@pytest.mark.parametrize("vocabulary", list(API_VOCABULARY), ids=lambda e: e.__name__)
def test_each_vocabulary_is_exactly_the_one_of_api_md(vocabulary: type[enum.StrEnum]) -> None:
    assert {member.value for member in vocabulary} == API_VOCABULARY[vocabulary]


def _placer(vocabulary: type[enum.StrEnum]) -> Callable[[dict[str, Any], str], None]:
    """Where a value of each vocabulary goes in a body."""

    def red_flag(data: dict[str, Any], value: str) -> None:
        data["red_flags"]["saddle_numbness"] = value

    def treatment(data: dict[str, Any], value: str) -> None:
        data["treatments_tried"][0]["treatment"] = value

    def outcome(data: dict[str, Any], value: str) -> None:
        data["treatments_tried"][0]["outcome"] = value

    def complication(data: dict[str, Any], value: str) -> None:
        data["regenerative_procedure"] = {"performed_on": "2026-04-01", "complications": [value]}

    def at(*path: str, as_list: bool = False) -> Callable[[dict[str, Any], str], None]:
        def place(data: dict[str, Any], value: str) -> None:
            target = data
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = [value] if as_list else value

        return place

    placers: dict[type[enum.StrEnum], Callable[[dict[str, Any], str], None]] = {
        words.Region: at("complaint", "regions", as_list=True),
        words.Trend: at("complaint", "trend"),
        words.RadiatesTo: at("complaint", "radiates_to", as_list=True),
        words.Symptom: at("symptoms", as_list=True),
        words.Condition: at("conditions", as_list=True),
        words.RiskFactor: at("risk_factors", as_list=True),
        words.Treatment: treatment,
        words.TreatmentOutcome: outcome,
        words.RedFlagAnswer: red_flag,
        words.Complication: complication,
        words.Sex: at("patient", "sex"),
    }
    return placers[vocabulary]


@pytest.mark.parametrize(
    ("vocabulary", "value"),
    [(vocabulary, value) for vocabulary, values in API_VOCABULARY.items() for value in sorted(values)],
)
def test_every_vocabulary_value_round_trips_through_json(vocabulary: type[enum.StrEnum], value: str) -> None:
    data = copy.deepcopy(API_EXAMPLE)
    data["complaint"]["duration_weeks"] = None  # spelled out, as the encoder writes every field
    _placer(vocabulary)(data, value)
    intake = decode(data)
    assert json.loads(msgspec.json.encode(intake)) == data


@pytest.mark.parametrize("vocabulary", list(API_VOCABULARY), ids=lambda e: e.__name__)
def test_a_value_outside_the_vocabulary_is_refused(vocabulary: type[enum.StrEnum]) -> None:
    data = copy.deepcopy(API_EXAMPLE)
    _placer(vocabulary)(data, "something_else")
    assert "Invalid enum value 'something_else'" in refusal(data)


# --- Shape and bounds ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "path"),
    [((), "$"), (("patient",), "$.patient"), (("red_flags",), "$.red_flags")],
)
def test_an_unknown_field_is_refused_rather_than_dropped(where: tuple[str, ...], path: str) -> None:
    data = copy.deepcopy(API_EXAMPLE)
    target = data
    for key in where:
        target = target[key]
    target["bladder_problems"] = "yes"
    message = refusal(data)
    assert "unknown field `bladder_problems`" in message
    assert names_path(message, path)


@pytest.mark.parametrize("question", list(API_EXAMPLE["red_flags"]))
def test_a_missing_red_flag_answer_is_refused_never_read_as_no(question: str) -> None:
    data = copy.deepcopy(API_EXAMPLE)
    del data["red_flags"][question]
    assert refusal(data) == f"Object missing required field `{question}` - at `$.red_flags`"


@pytest.mark.parametrize("intensity", [-1, 11])
def test_intensity_outside_0_to_10_is_refused(intensity: int) -> None:
    data = body(change=lambda d: d["complaint"].update(intensity=intensity))
    assert refusal(data).endswith("at `$.complaint.intensity`")


@pytest.mark.parametrize("intensity", [0, 10])
def test_intensity_0_and_10_are_accepted(intensity: int) -> None:
    data = body(change=lambda d: d["complaint"].update(intensity=intensity))
    assert decode(data).complaint.intensity == intensity


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda d: d["complaint"].update(regions=[]), "$.complaint.regions"),
        (lambda d: d["complaint"].update(duration_weeks=2601), "$.complaint.duration_weeks"),
        (lambda d: d["complaint"].update(duration_weeks=-1), "$.complaint.duration_weeks"),
        (lambda d: d["patient"].update(given_name=""), "$.patient.given_name"),
        (lambda d: d["patient"].update(family_name="x" * 201), "$.patient.family_name"),
        (lambda d: d["patient"].update(mrn="M" * 65), "$.patient.mrn"),
        (lambda d: d["patient"].update(birth_date="02/04/1971"), "$.patient.birth_date"),
        (lambda d: d["patient"].pop("birth_date"), "$.patient"),
        (lambda d: d.update(notes="n" * 4001), "$.notes"),
        (lambda d: d["treatments_tried"][0].update(weeks=2601), "$.treatments_tried[0].weeks"),
        (lambda d: d.pop("red_flags"), "$"),
    ],
    ids=[
        "no-region",
        "duration-too-long",
        "negative-duration",
        "empty-given-name",
        "family-name-too-long",
        "mrn-too-long",
        "birth-date-not-iso",
        "no-birth-date",
        "notes-too-long",
        "treatment-weeks-too-long",
        "no-red-flags",
    ],
)
def test_out_of_bounds_fields_are_refused_with_their_path(
    edit: Callable[[dict[str, Any]], None], path: str
) -> None:
    data = copy.deepcopy(API_EXAMPLE)
    edit(data)
    assert names_path(refusal(data), path)


def test_optional_parts_default_to_empty() -> None:
    data = copy.deepcopy(API_EXAMPLE)
    for key in ("symptoms", "conditions", "risk_factors", "treatments_tried", "notes"):
        del data[key]
    del data["regenerative_procedure"]
    del data["patient"]["sex"]
    intake = decode(data)
    assert intake.patient.sex is words.Sex.UNKNOWN
    assert (intake.symptoms, intake.conditions, intake.risk_factors, intake.treatments_tried) == (
        [],
        [],
        [],
        [],
    )
    assert intake.regenerative_procedure is None
    assert intake.notes is None


def test_malformed_json_is_a_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_intake(b'{"patient": ')


# --- Cross-field checks --------------------------------------------------------------------------


def problems(data: dict[str, Any]) -> list[FieldProblem]:
    return check_intake(decode(data), TODAY)


def test_both_onset_date_and_duration_are_refused_on_onset_date() -> None:
    found = problems(body(change=lambda d: d["complaint"].update(duration_weeks=10)))
    assert [e.field for e in found] == ["complaint.onset_date"]
    assert "give onset_date or duration_weeks" in found[0].message.lower()


def test_neither_onset_date_nor_duration_is_refused_on_onset_date() -> None:
    found = problems(body(change=lambda d: d["complaint"].pop("onset_date")))
    assert [e.field for e in found] == ["complaint.onset_date"]
    assert "give onset_date or duration_weeks" in found[0].message.lower()


def test_duration_alone_is_accepted() -> None:
    data = body(
        drop=lambda d: d["complaint"].pop("onset_date"),
        add=lambda d: d["complaint"].update(duration_weeks=10),
    )
    assert problems(data) == []


@pytest.mark.parametrize(("days_ahead", "refused"), [(0, False), (1, True)])
def test_onset_date_in_the_future_is_refused(days_ahead: int, refused: bool) -> None:
    onset = (TODAY + datetime.timedelta(days=days_ahead)).isoformat()
    found = problems(body(change=lambda d: d["complaint"].update(onset_date=onset)))
    assert [e.field for e in found] == (["complaint.onset_date"] if refused else [])


def test_birth_date_in_the_future_is_refused() -> None:
    found = problems(body(change=lambda d: d["patient"].update(birth_date="2026-05-16")))
    assert [e.field for e in found] == ["patient.birth_date"]
    assert "future" in found[0].message


@pytest.mark.parametrize(("performed_on", "refused"), [("2026-05-15", False), ("2026-05-16", True)])
def test_procedure_in_the_future_is_refused(performed_on: str, refused: bool) -> None:
    found = problems(body(change=lambda d: d.update(regenerative_procedure={"performed_on": performed_on})))
    assert [e.field for e in found] == (["regenerative_procedure.performed_on"] if refused else [])


def test_pain_starting_before_birth_is_refused() -> None:
    found = problems(body(change=lambda d: d["complaint"].update(onset_date="1971-04-01")))
    assert [e.field for e in found] == ["complaint.onset_date"]
    assert "before the patient was born" in found[0].message


def test_onset_on_the_birth_date_is_accepted() -> None:
    assert problems(body(change=lambda d: d["complaint"].update(onset_date="1971-04-02"))) == []


def test_duration_longer_than_the_patients_life_is_refused() -> None:
    data = body(
        birth=lambda d: d["patient"].update(birth_date="2025-05-15"),  # 365 days old
        drop=lambda d: d["complaint"].pop("onset_date"),
        add=lambda d: d["complaint"].update(duration_weeks=53),
    )
    found = problems(data)
    assert [e.field for e in found] == ["complaint.duration_weeks"]
    data["complaint"]["duration_weeks"] = 52
    assert problems(data) == []


def test_a_name_of_spaces_only_is_refused() -> None:
    found = problems(body(change=lambda d: d["patient"].update(given_name="   ")))
    assert [e.field for e in found] == ["patient.given_name"]


def test_every_problem_is_reported_at_once() -> None:
    data = body(
        birth=lambda d: d["patient"].update(birth_date="2030-01-01"),
        proc=lambda d: d.update(regenerative_procedure={"performed_on": "2030-01-01"}),
        onset=lambda d: d["complaint"].update(duration_weeks=4),
    )
    assert [e.field for e in problems(data)] == [
        "patient.birth_date",
        "complaint.onset_date",
        "regenerative_procedure.performed_on",
    ]


@settings(max_examples=200)
@given(data=intake_bodies(TODAY))
def test_generated_bodies_are_json_that_the_api_accepts(data: dict[str, Any]) -> None:
    intake = decode_intake(json.dumps(data).encode())
    assert check_intake(intake, TODAY) == []
