"""`Questionnaire/back-pain-intake`: the intake form as a FHIR Questionnaire, generated from the
form's own type (`IntakeBody`, services/common/contracts/intake_body.py), and the two conversions between
a QuestionnaireResponse and the form.

One item per field, its `linkId` the field's dotted path (`complaint.intensity`,
`red_flags.saddle_numbness`, `treatments_tried.treatment`), so an error on a field names the
item to fix. A closed vocabulary becomes a `choice` item whose answer options are the enum's
values, coded in a CodeSystem of the clinic's own (served at `CodeSystem/<name>`), except sex,
whose values are FHIR's administrative gender. The red flags are required choice items answered
yes / no / unsure. Because everything is derived from the type, a field or value added to the
form appears here, and the Questionnaire's version (a digest of its items) changes with it.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec
import msgspec.inspect as mi

from services.common.contracts.fhir import (
    ADMINISTRATIVE_GENDER,
    LOW_BACK_PAIN,
    Issue,
    canonical,
    code_system,
    humanize,
    kebab,
)
from services.common.contracts.intake_body import IntakeBody, Sex
from services.common.settings import Settings

QUESTIONNAIRE_ID = "back-pain-intake"
#: Strings longer than this are free text (`text` items) rather than one line (`string`).
_TEXT_LENGTH = 1000
_MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
_MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
#: Value sets FHIR already defines, used instead of a CodeSystem of ours.
_WELL_KNOWN_SYSTEMS: dict[type[enum.Enum], str] = {Sex: ADMINISTRATIVE_GENDER}


@dataclass(frozen=True)
class FormItem:
    """One field of the form: `kind` is the Questionnaire item type."""

    link_id: str
    name: str
    kind: str
    required: bool
    repeats: bool = False
    vocabulary: type[enum.Enum] | None = None
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    children: tuple[FormItem, ...] = field(default=())

    def child(self, link_id: str) -> FormItem | None:
        return next((c for c in self.children if c.link_id == link_id), None)


def _strip_optional(tp: mi.Type) -> tuple[mi.Type, bool]:
    if isinstance(tp, mi.UnionType):
        others = [t for t in tp.types if not isinstance(t, mi.NoneType)]
        if len(others) == 1:
            return others[0], True
    return tp, False


def _item(name: str, link_id: str, tp: mi.Type, required: bool) -> FormItem:
    tp, optional = _strip_optional(tp)
    required = required and not optional
    if isinstance(tp, mi.ListType):
        inner = _item(name, link_id, tp.item_type, required)
        return replace(inner, repeats=True, required=bool(tp.min_length) or inner.required)
    if isinstance(tp, mi.StructType):
        children = tuple(_item(f.name, f"{link_id}.{f.name}", f.type, f.required) for f in tp.fields)
        return FormItem(link_id, name, "group", required, children=children)
    if isinstance(tp, mi.EnumType):
        return FormItem(link_id, name, "choice", required, vocabulary=tp.cls)
    if isinstance(tp, mi.StrType):
        kind = "text" if (tp.max_length or 0) > _TEXT_LENGTH else "string"
        return FormItem(link_id, name, kind, required, max_length=tp.max_length)
    if isinstance(tp, mi.IntType):
        return FormItem(link_id, name, "integer", required, minimum=tp.ge, maximum=tp.le)
    if isinstance(tp, mi.DateType):
        return FormItem(link_id, name, "date", required)
    raise TypeError(f"the intake form has a field FHIR cannot express: {link_id} ({tp!r})")


def find_item(link_id: str) -> FormItem | None:
    items, found = FORM, None
    for depth, _ in enumerate(link_id.split("."), start=1):
        prefix = ".".join(link_id.split(".")[:depth])
        found = next((i for i in items if i.link_id == prefix), None)
        if found is None:
            return None
        items = found.children
    return found


def form_items() -> tuple[FormItem, ...]:
    """The form's fields, in the order of `IntakeBody`."""
    info = mi.type_info(IntakeBody)
    assert isinstance(info, mi.StructType)
    return tuple(_item(f.name, f.name, f.type, f.required) for f in info.fields)


FORM = form_items()


def vocabularies() -> dict[str, type[enum.Enum]]:
    """The form's closed vocabularies that the clinic codes itself, by CodeSystem id."""
    found: dict[str, type[enum.Enum]] = {}

    def walk(items: tuple[FormItem, ...]) -> None:
        for item in items:
            if item.vocabulary is not None and item.vocabulary not in _WELL_KNOWN_SYSTEMS:
                found[kebab(item.vocabulary.__name__)] = item.vocabulary
            walk(item.children)

    walk(FORM)
    return found


def vocabulary_system(settings: Settings, vocabulary: type[enum.Enum]) -> str:
    return _WELL_KNOWN_SYSTEMS.get(vocabulary) or canonical(
        settings, "CodeSystem", kebab(vocabulary.__name__)
    )


def coding(settings: Settings, vocabulary: type[enum.Enum], code: str) -> dict[str, str]:
    return {"system": vocabulary_system(settings, vocabulary), "code": code, "display": humanize(code)}


def vocabulary_code_system(settings: Settings, cs_id: str) -> dict[str, Any] | None:
    vocabulary = vocabularies().get(cs_id)
    if vocabulary is None:
        return None
    return code_system(
        settings,
        cs_id,
        f"Back-pain intake: {humanize(cs_id.replace('-', '_')).lower()}",
        [(str(m.value), humanize(str(m.value)), None) for m in vocabulary],
        version=form_version(),
        description="A closed vocabulary of the clinic's back-pain intake form.",
    )


def _questionnaire_item(settings: Settings, item: FormItem) -> dict[str, Any]:
    out: dict[str, Any] = {
        "linkId": item.link_id,
        "text": humanize(item.name),
        "type": item.kind,
        "required": item.required,
        "repeats": item.repeats,
    }
    if item.vocabulary is not None:
        out["answerOption"] = [
            {"valueCoding": coding(settings, item.vocabulary, str(m.value))} for m in item.vocabulary
        ]
    if item.max_length is not None:
        out["maxLength"] = item.max_length
    extensions = [
        {"url": url, "valueInteger": bound}
        for url, bound in ((_MIN_VALUE, item.minimum), (_MAX_VALUE, item.maximum))
        if bound is not None
    ]
    if extensions:
        out["extension"] = extensions
    if item.children:
        out["item"] = [_questionnaire_item(settings, c) for c in item.children]
    return out


def _digest_of(items: tuple[FormItem, ...]) -> str:
    def plain(item: FormItem) -> list[Any]:
        codes = [str(m.value) for m in item.vocabulary] if item.vocabulary else None
        return [
            item.link_id,
            item.kind,
            item.required,
            item.repeats,
            codes,
            item.max_length,
            item.minimum,
            item.maximum,
            [plain(c) for c in item.children],
        ]

    return hashlib.sha256(msgspec.json.encode([plain(i) for i in items])).hexdigest()[:12]


def form_version() -> str:
    """The form's version: a digest of its fields, vocabularies and bounds, so it changes
    exactly when the form does."""
    return f"1.{_digest_of(FORM)}"


def questionnaire_url(settings: Settings) -> str:
    return canonical(settings, "Questionnaire", QUESTIONNAIRE_ID)


def questionnaire(settings: Settings) -> dict[str, Any]:
    return {
        "resourceType": "Questionnaire",
        "id": QUESTIONNAIRE_ID,
        "url": questionnaire_url(settings),
        "version": form_version(),
        "name": "BackPainIntake",
        "title": "Back-pain intake",
        "status": "active",
        "subjectType": ["Patient"],
        "publisher": "Clinic",
        "description": "The clinic's back-pain intake form: history, red flags and treatments "
        "tried. Submitting a completed response creates an intake, which is triaged into a referral.",
        "code": [LOW_BACK_PAIN],
        "item": [_questionnaire_item(settings, item) for item in FORM],
    }


# -- the form as answers ---------------------------------------------------------------------------


def _answer(settings: Settings, item: FormItem, value: Any) -> dict[str, Any]:
    if item.vocabulary is not None:
        return {"valueCoding": coding(settings, item.vocabulary, str(value))}
    key = {"string": "valueString", "text": "valueString", "integer": "valueInteger", "date": "valueDate"}
    return {key[item.kind]: value}


def _response_items(settings: Settings, items: tuple[FormItem, ...], values: dict[str, Any]) -> list[Any]:
    out: list[dict[str, Any]] = []
    for item in items:
        value = values.get(item.name)
        if value is None or value == []:
            continue
        if item.kind == "group":
            for one in value if item.repeats else [value]:
                children = _response_items(settings, item.children, one)
                if children:
                    out.append({"linkId": item.link_id, "text": humanize(item.name), "item": children})
            continue
        answers = [_answer(settings, item, v) for v in (value if item.repeats else [value])]
        out.append({"linkId": item.link_id, "text": humanize(item.name), "answer": answers})
    return out


def response_items(settings: Settings, body: IntakeBody) -> list[dict[str, Any]]:
    """The QuestionnaireResponse items of one intake version (unanswered fields left out)."""
    return _response_items(settings, FORM, msgspec.to_builtins(body))


_ANSWER_KEYS = {
    "string": "valueString",
    "text": "valueString",
    "integer": "valueInteger",
    "date": "valueDate",
    "choice": "valueCoding",
}


def item_path(link_id: str, indexes: dict[str, int] | None = None) -> str:
    """The FHIRPath of an item by its linkId (`complaint.intensity` -> the `complaint` group's
    `complaint.intensity` item)."""
    parts = link_id.split(".")
    path = "QuestionnaireResponse"
    for depth in range(1, len(parts) + 1):
        current = ".".join(parts[:depth])
        path += f".item.where(linkId='{current}')"
        if indexes and current in indexes:
            path += f"[{indexes[current]}]"
    return path


class AnswerError(Exception):
    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("; ".join(i.diagnostics for i in issues))
        self.issues = issues


def _read_answer(settings: Settings, item: FormItem, answer: Any, issues: list[Issue]) -> Any:
    if not isinstance(answer, dict):
        issues.append(Issue(f"{item.link_id}: an answer is an object", "structure", item_path(item.link_id)))
        return None
    expected = _ANSWER_KEYS[item.kind]
    given = [k for k in answer if k.startswith("value")]
    if given != [expected]:
        # Passed on as given: the form's own validation names the field and what it takes.
        return answer.get(given[0]) if given else None
    value = answer[expected]
    if item.kind == "choice":
        if not isinstance(value, dict):
            return value
        assert item.vocabulary is not None
        system = value.get("system")
        if system is not None and system != vocabulary_system(settings, item.vocabulary):
            issues.append(
                Issue(
                    f"{item.link_id}: codes come from {vocabulary_system(settings, item.vocabulary)}",
                    "code-invalid",
                    item_path(item.link_id),
                )
            )
        return value.get("code")
    return value


def _read_items(
    settings: Settings, form: tuple[FormItem, ...], items: Any, issues: list[Issue]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if not isinstance(items, list):
        return values
    by_link = {f.link_id: f for f in form}
    for raw in items:
        link_id = raw.get("linkId") if isinstance(raw, dict) else None
        item = by_link.get(link_id) if isinstance(link_id, str) else None
        if item is None:
            issues.append(Issue(f"{link_id}: not an item of this questionnaire", "structure"))
            continue
        assert isinstance(raw, dict)
        if item.kind == "group":
            group = _read_items(settings, item.children, raw.get("item"), issues)
            if item.repeats:
                values.setdefault(item.name, []).append(group)
            elif item.name in values:
                issues.append(Issue(f"{item.link_id}: answered twice", "structure", item_path(item.link_id)))
            else:
                values[item.name] = group
            continue
        answers = raw.get("answer") or []
        read = [
            _read_answer(settings, item, a, issues) for a in (answers if isinstance(answers, list) else [])
        ]
        if item.name in values:
            issues.append(Issue(f"{item.link_id}: answered twice", "structure", item_path(item.link_id)))
        elif item.repeats:
            values[item.name] = read
        elif len(read) > 1:
            issues.append(Issue(f"{item.link_id}: takes one answer", "structure", item_path(item.link_id)))
        elif read:
            values[item.name] = read[0]
    return values


def form_from_response(settings: Settings, items: Any) -> bytes:
    """The intake body (JSON, for the form's own strict validation) a response's items answer.

    Raises `AnswerError` for what the form's validation cannot see: an item this questionnaire
    does not have, a field answered twice, a code from another system."""
    issues: list[Issue] = []
    values = _read_items(settings, FORM, items, issues)
    if issues:
        raise AnswerError(issues)
    return msgspec.json.encode(values)


_INDEX = re.compile(r"\[(\d+)\]")


def field_issue(field_path: str, message: str) -> Issue:
    """An error of the form (`treatments_tried[0].outcome`) as an issue on its item's linkId."""
    if field_path in ("", "body"):
        return Issue(message, "invalid", "QuestionnaireResponse")
    link_id = _INDEX.sub("", field_path)
    indexes: dict[str, int] = {}
    prefix = ""
    for part in field_path.split("."):
        match = _INDEX.search(part)
        name = _INDEX.sub("", part)
        prefix = f"{prefix}.{name}" if prefix else name
        found = find_item(prefix)
        if match and found is not None and found.kind == "group":  # a repeated group's nth answer
            indexes[prefix] = int(match.group(1))
    code = "required" if message == "This field is required." else "invalid"
    return Issue(f"{link_id}: {message}", code, item_path(link_id, indexes))
