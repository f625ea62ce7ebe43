"""The new-intake (and amendment) form in HTML, to and from the JSON body the API takes.

Field names are the body's paths (`patient.given_name`, `treatments_tried[1].outcome`), so a
validation error names the field it belongs beside. The form is turned into the same JSON the API
receives and checked by the same `parse_intake`: a form the page accepts is one the API accepts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import msgspec

from services.common.contracts.intake_body import IntakeBody
from services.common.http.problems import FieldProblem

#: Blank treatment rows a new form shows; "Add another treatment" posts back with one more.
TREATMENT_ROWS = 2
MAX_TREATMENT_ROWS = 20
LIST_FIELDS = ("complaint.regions", "complaint.radiates_to", "symptoms", "conditions", "risk_factors")
PATIENT_FIELDS = ("mrn", "given_name", "family_name", "birth_date", "sex", "phone", "email")
DURATION_KINDS = ("onset", "weeks")


@dataclass
class FormState:
    """What the page shows: the values typed (as text), the errors by field, the row count."""

    values: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    rows: int = TREATMENT_ROWS

    def value(self, name: str) -> str:
        found = self.values.get(name) or [""]
        return found[0]

    def checked(self, name: str, option: str) -> bool:
        return option in self.values.get(name, [])

    def add_error(self, name: str, message: str) -> None:
        if message not in self.errors.setdefault(name, []):
            self.errors[name].append(message)


def _text(values: dict[str, list[str]], name: str) -> str:
    return (values.get(name) or [""])[0].strip()


def _number(raw: str) -> Any:
    """An int when it is one; else the text itself, so the validator names the field."""
    try:
        return int(raw)
    except ValueError:
        return raw


def row_count(values: dict[str, list[str]]) -> int:
    try:
        rows = int(_text(values, "treatment_rows") or TREATMENT_ROWS)
    except ValueError:
        rows = TREATMENT_ROWS
    return max(1, min(rows, MAX_TREATMENT_ROWS))


def body_from_form(values: dict[str, list[str]], state: FormState) -> dict[str, Any]:
    """The JSON body the form stands for; blank fields are left out (a required one is then
    reported missing). Choices the form itself asks (onset date or weeks, whether there was a
    procedure) are checked here and reported into `state`."""
    patient: dict[str, Any] = {}
    for name in PATIENT_FIELDS:
        if raw := _text(values, f"patient.{name}"):
            patient[name] = raw
    complaint: dict[str, Any] = {}
    for name in ("complaint.regions", "complaint.radiates_to"):
        complaint[name.split(".")[1]] = [v for v in values.get(name, []) if v]
    kind = _text(values, "duration_kind")
    if kind == "onset":
        if raw := _text(values, "complaint.onset_date"):
            complaint["onset_date"] = raw
        else:
            state.add_error("complaint.onset_date", "Enter the date the pain started.")
    elif kind == "weeks":
        if raw := _text(values, "complaint.duration_weeks"):
            complaint["duration_weeks"] = _number(raw)
        else:
            state.add_error("complaint.duration_weeks", "Enter how many weeks the pain has lasted.")
    else:
        state.add_error(
            "duration_kind", "Choose whether you know the date the pain started or how many weeks."
        )
    if raw := _text(values, "complaint.intensity"):
        complaint["intensity"] = _number(raw)
    if raw := _text(values, "complaint.trend"):
        complaint["trend"] = raw
    body: dict[str, Any] = {"patient": patient, "complaint": complaint}
    for name in ("symptoms", "conditions", "risk_factors"):
        body[name] = [v for v in values.get(name, []) if v]
    treatments = []
    for i in range(row_count(values)):
        row = {k: _text(values, f"treatments_tried[{i}].{k}") for k in ("treatment", "outcome", "weeks")}
        if not any(row.values()):
            continue
        treatment: dict[str, Any] = {k: row[k] for k in ("treatment", "outcome") if row[k]}
        if row["weeks"]:
            treatment["weeks"] = _number(row["weeks"])
        treatments.append((i, treatment))
    body["treatments_tried"] = [t for _, t in treatments]
    state.values["_treatment_index"] = [str(i) for i, _ in treatments]
    body["red_flags"] = {
        name.removeprefix("red_flags."): raw
        for name in values
        if name.startswith("red_flags.") and (raw := _text(values, name))
    }
    asked = _text(values, "procedure_asked")
    if asked == "yes":
        procedure: dict[str, Any] = {
            "complications": [v for v in values.get("regenerative_procedure.complications", []) if v]
        }
        if raw := _text(values, "regenerative_procedure.performed_on"):
            procedure["performed_on"] = raw
        body["regenerative_procedure"] = procedure
    elif asked != "no":
        state.add_error("procedure_asked", "Answer whether the patient has had a regenerative procedure.")
    if notes := _text(values, "notes"):
        body["notes"] = notes
    return body


def _form_name(problem_field: str, state: FormState) -> str:
    """The form field an API error path belongs to (list items to their list, treatment rows to the
    row as it is numbered on the form)."""
    if problem_field.startswith("treatments_tried["):
        index, _, rest = problem_field.removeprefix("treatments_tried[").partition("]")
        shown = state.values.get("_treatment_index", [])
        if index.isdigit() and int(index) < len(shown):
            return f"treatments_tried[{shown[int(index)]}]{rest}"
    for name in LIST_FIELDS:
        if problem_field.startswith(name + "["):
            return name
    if problem_field == "complaint.duration_weeks" and "complaint.duration_weeks" not in state.values:
        return "complaint.onset_date"
    return problem_field


def plain_message(problem: FieldProblem) -> str:
    """The validator's message in words for the front desk."""
    message = problem.message
    if message == "This field is required.":
        if problem.field.startswith("red_flags."):
            return "Answer yes, no or not sure."
        return "This is required."
    if message.startswith("Invalid enum value"):
        return "Choose one of the options."
    if "RFC3339" in message or ("date" in message and message.startswith("Expected")):
        return "Enter a real date."
    if message.startswith("Expected `int`") or message.startswith("Expected `array` of length >= 1"):
        if "array" in message:
            return "Choose at least one."
        bounds = message.removeprefix("Expected `int`").strip()
        return f"Enter a whole number ({bounds})." if bounds else "Enter a whole number."
    if message.startswith("Expected `str` of length <="):
        return "This is too long."
    return message


def add_problems(state: FormState, problems: list[FieldProblem]) -> None:
    for problem in problems:
        name = _form_name(problem.field, state)
        if name == "complaint.onset_date" and state.value("duration_kind") == "weeks":
            name = "complaint.duration_weeks"
        state.add_error(name, plain_message(problem))


#: The order of the form's questions, for listing errors as the form shows them.
FORM_ORDER = (
    "patient_choice",
    *(
        f"patient.{name}"
        for name in ("given_name", "family_name", "birth_date", "mrn", "phone", "email", "sex")
    ),
    "complaint.regions",
    "duration_kind",
    "complaint.onset_date",
    "complaint.duration_weeks",
    "complaint.intensity",
    "complaint.trend",
    "complaint.radiates_to",
    "red_flags.",
    "symptoms",
    "conditions",
    "risk_factors",
    "treatments_tried[",
    "procedure_asked",
    "regenerative_procedure",
    "notes",
    "change_reason",
)


def in_form_order(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    def position(name: str) -> int:
        for i, prefix in enumerate(FORM_ORDER):
            if name == prefix or (
                (prefix.endswith((".", "[")) or prefix == "regenerative_procedure")
                and name.startswith(prefix)
            ):
                return i
        return len(FORM_ORDER)

    return dict(sorted(errors.items(), key=lambda item: position(item[0])))


def form_from_body(body: IntakeBody) -> FormState:
    """A form prefilled from a stored intake (to amend it)."""
    raw = msgspec.to_builtins(body)
    values: dict[str, list[str]] = {}
    for name, value in raw["patient"].items():
        if value is not None:
            values[f"patient.{name}"] = [str(value)]
    complaint = raw["complaint"]
    for name in ("regions", "radiates_to"):
        values[f"complaint.{name}"] = list(complaint.get(name, []))
    if complaint.get("onset_date"):
        values["duration_kind"] = ["onset"]
        values["complaint.onset_date"] = [complaint["onset_date"]]
    elif complaint.get("duration_weeks") is not None:
        values["duration_kind"] = ["weeks"]
        values["complaint.duration_weeks"] = [str(complaint["duration_weeks"])]
    values["complaint.intensity"] = [str(complaint["intensity"])]
    values["complaint.trend"] = [complaint["trend"]]
    for name in ("symptoms", "conditions", "risk_factors"):
        values[name] = list(raw.get(name, []))
    for i, row in enumerate(raw.get("treatments_tried", [])):
        for k, v in row.items():
            if v is not None:
                values[f"treatments_tried[{i}].{k}"] = [str(v)]
    for name, answer in raw["red_flags"].items():
        values[f"red_flags.{name}"] = [answer]
    procedure = raw.get("regenerative_procedure")
    values["procedure_asked"] = ["yes" if procedure else "no"]
    if procedure:
        values["regenerative_procedure.performed_on"] = [procedure["performed_on"]]
        values["regenerative_procedure.complications"] = list(procedure.get("complications", []))
    if raw.get("notes"):
        values["notes"] = [raw["notes"]]
    rows = max(TREATMENT_ROWS, len(raw.get("treatments_tried", [])) + 1)
    return FormState(values=values, rows=rows)


def flatten(body: IntakeBody) -> dict[str, str]:
    """Each answer of an intake by field path, as text, for comparing versions side by side."""
    out: dict[str, str] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else k)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")
        elif isinstance(value, list):
            out[path] = ", ".join(str(v) for v in value)
        elif value is not None:
            out[path] = str(value)

    walk(msgspec.to_builtins(body), "")
    return out


def today_utc(now: dt.datetime) -> dt.date:
    return now.astimezone(dt.UTC).date()
