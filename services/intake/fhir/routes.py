"""The intake service's FHIR R4 interface: `Patient`, `QuestionnaireResponse` (one per intake
version, read and searched, and created from a completed back-pain questionnaire), the
`Questionnaire` itself and the CodeSystems of its answers.

Same keys and roles as `/v1/intakes`: front desk and clinicians read, the front desk submits
(admin always). Reads go through `intakes.reads.get_intake` and `fhir.store`; a submission
goes through `parse_intake` and `intakes.submissions.submit_intake`, exactly as `POST /v1/intakes`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import HeaderParameter, RawBody
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.auth import require_roles
from services.common.contracts import fhir_search
from services.common.contracts.fhir import (
    FhirError,
    Issue,
    ResourceId,
    check_id,
    fhir_response,
    fhir_router,
    instant,
    mrn_identifier,
    mrn_system,
    not_found,
    uuid_id,
)
from services.common.contracts.fhir_search import SearchParam
from services.common.contracts.intake_form import latest_today, parse_intake
from services.common.http.deps import Caller, ClinicSettings, Now
from services.common.http.problems import UnprocessableProblem
from services.common.http.web import DbSession
from services.common.settings import Settings
from services.intake.db.models import IntakeVersion, Patient
from services.intake.fhir import store
from services.intake.fhir.questionnaire import (
    QUESTIONNAIRE_ID,
    AnswerError,
    field_issue,
    form_from_response,
    form_version,
    questionnaire,
    questionnaire_url,
    response_items,
    vocabulary_code_system,
)
from services.intake.intakes import authors, reads, submissions
from services.intake.intakes.controllers import READERS, SUBMITTERS
from services.intake.intakes.schemas import Intake

READ = require_roles(*READERS)
SUBMIT = require_roles(*SUBMITTERS)


# -- resources -----------------------------------------------------------------------------------


def _text(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def patient_resource(settings: Settings, patient: Patient) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(patient.id),
        "meta": {"lastUpdated": instant(patient.updated_at)},
        "name": [
            {"use": "official", "family": patient.family_name.strip(), "given": [patient.given_name.strip()]}
        ],
        "gender": patient.sex,
        "birthDate": patient.birth_date.isoformat(),
    }
    if patient.mrn:
        resource["identifier"] = [mrn_identifier(settings, patient.mrn)]
    telecom = [
        {"system": system, "value": value}
        for system, value in (("phone", _text(patient.phone)), ("email", _text(patient.email)))
        if value
    ]
    if telecom:
        resource["telecom"] = telecom
    return resource


def response_id(intake_id: uuid.UUID, version: int) -> str:
    return f"{intake_id}-{version}"


def parse_response_id(resource_id: ResourceId) -> tuple[uuid.UUID, int]:
    intake, _, version = check_id("QuestionnaireResponse", resource_id).rpartition("-")
    try:
        parsed = uuid.UUID(intake), int(version)
    except ValueError as exc:
        raise not_found("QuestionnaireResponse", resource_id) from exc
    if not 1 <= parsed[1] <= 2**31 - 1:
        raise not_found("QuestionnaireResponse", resource_id)
    return parsed


def response_resource(settings: Settings, intake: Intake, identifier: str | None) -> dict[str, Any]:
    """One intake version as a QuestionnaireResponse: version 1 `completed`, later versions
    (amendments) `amended`; authored by whoever submitted that version."""
    authored = intake.amended_at or intake.submitted_at
    resource: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": response_id(intake.id, intake.version),
        "meta": {"lastUpdated": instant(authored)},
        "questionnaire": f"{questionnaire_url(settings)}|{form_version()}",
        "status": "completed" if intake.version == 1 else "amended",
        "subject": {"reference": f"Patient/{intake.patient_id}", "type": "Patient"},
        "authored": instant(authored),
        "author": {"display": intake.amended_by or intake.submitted_by},
        "item": response_items(settings, intake),
    }
    if identifier is not None and intake.version == 1:
        system, _, value = identifier.partition("|")
        resource["identifier"] = {"system": system, "value": value} if system else {"value": value}
    return resource


async def _responses(
    session: AsyncSession, settings: Settings, keys: list[tuple[uuid.UUID, int]]
) -> list[dict[str, Any]]:
    identifiers = await store.identifiers_of(session, [intake_id for intake_id, v in keys if v == 1])
    found = []
    for intake_id, version in keys:
        intake = await reads.get_intake(session, intake_id, version)
        if intake is not None:
            found.append(response_resource(settings, intake, identifiers.get(intake_id)))
    return found


# -- handlers ------------------------------------------------------------------------------------


#: What each search takes (strictly: any other parameter is a 400), as the CapabilityStatement lists it.
PATIENT_SEARCH = (
    SearchParam("identifier", "token", "The MRN: `[system|]value`."),
    SearchParam("_id", "token", "The patient's id."),
    SearchParam("_lastUpdated", "date", "When the demographics last changed (eq/gt/ge/lt/le)."),
)
RESPONSE_SEARCH = (
    SearchParam("patient", "reference", "The intake's patient: `Patient/<id>` or the id."),
    SearchParam("subject", "reference", "The same as `patient`."),
    SearchParam("identifier", "token", "The identifier the response was submitted with."),
    SearchParam("_lastUpdated", "date", "When that version was submitted (eq/gt/ge/lt/le)."),
)


@get("/Questionnaire/{resource_id:str}", sync_to_thread=False)
def read_questionnaire(settings: ClinicSettings, resource_id: ResourceId) -> Response[bytes]:
    """The intake form as a Questionnaire (any valid key)."""
    if resource_id != QUESTIONNAIRE_ID:
        raise not_found("Questionnaire", resource_id)
    return fhir_response(questionnaire(settings))


@get("/CodeSystem/{resource_id:str}", sync_to_thread=False)
def read_code_system(settings: ClinicSettings, resource_id: ResourceId) -> Response[bytes]:
    """The codes of one of the form's closed vocabularies (any valid key)."""
    found = vocabulary_code_system(settings, resource_id)
    if found is None:
        raise not_found("CodeSystem", resource_id)
    return fhir_response(found)


@get("/Patient/{resource_id:str}", guards=[READ])
async def read_patient(
    settings: ClinicSettings, db_session: DbSession, resource_id: ResourceId
) -> Response[bytes]:
    patient = await store.get_patient(db_session, uuid_id("Patient", resource_id))
    if patient is None:
        raise not_found("Patient", resource_id)
    return fhir_response(patient_resource(settings, patient))


def _uuid_param(value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return uuid.UUID(int=0)  # no such record: the search finds nothing


@get("/Patient", guards=[READ], opt={"fhir_search": PATIENT_SEARCH})
async def search_patients(
    request: Request[Any, Any, Any], settings: ClinicSettings, db_session: DbSession
) -> Response[bytes]:
    search = fhir_search.parse_search(request, tuple[str, uuid.UUID])
    mrn = None
    if (identifier := search.one("identifier")) is not None:
        system, mrn = fhir_search.token(identifier)
        if system not in (None, mrn_system(settings)):  # another system's identifiers: none here
            return fhir_response(fhir_search.searchset(request, search, [], None))
    updated = search.values.get("_lastUpdated", [])
    where = store.PatientQuery(
        patient_id=_uuid_param(search.one("_id")),
        mrn=mrn,
        updated=fhir_search.date_filters("_lastUpdated", updated, Patient.updated_at),
    )
    after = None
    if search.after is not None:
        after = (_moment(search.after[0]), search.after[1])
    patients, last = await store.find_patients(db_session, where, search.count, after)
    next_key = None if last is None else [last[0].isoformat(), str(last[1])]
    resources = [patient_resource(settings, p) for p in patients]
    return fhir_response(fhir_search.searchset(request, search, resources, next_key))


def _moment(value: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise FhirError(400, [Issue("_cursor: not a cursor this server gave", "invalid", "_cursor")]) from exc


@get("/QuestionnaireResponse/{resource_id:str}", guards=[READ])
async def read_response(
    settings: ClinicSettings, db_session: DbSession, resource_id: ResourceId
) -> Response[bytes]:
    intake_id, version = parse_response_id(resource_id)
    found = await _responses(db_session, settings, [(intake_id, version)])
    if not found:
        raise not_found("QuestionnaireResponse", resource_id)
    return fhir_response(found[0])


@get("/QuestionnaireResponse", guards=[READ], opt={"fhir_search": RESPONSE_SEARCH})
async def search_responses(
    request: Request[Any, Any, Any], settings: ClinicSettings, db_session: DbSession
) -> Response[bytes]:
    """Every intake version as a response, newest first."""
    search = fhir_search.parse_search(request, tuple[str, uuid.UUID, int])
    patient = search.one("patient") or search.one("subject")
    patient_id = fhir_search.reference_id("patient", patient, "Patient") if patient else None
    intake_ids: list[uuid.UUID] | None = None
    version = None
    if (identifier := search.one("identifier")) is not None:
        intake_ids = await store.intakes_for_identifier(db_session, *fhir_search.token(identifier))
        version = 1
    authored = search.values.get("_lastUpdated", [])
    where = store.VersionQuery(
        patient_id=_uuid_param(patient_id),
        intake_ids=intake_ids,
        version=version,
        authored=fhir_search.date_filters("_lastUpdated", authored, IntakeVersion.submitted_at),
    )
    after = None
    if search.after is not None:
        after = (_moment(search.after[0]), search.after[1], search.after[2])
    keys, last = await store.find_versions(db_session, where, search.count, after)
    resources = await _responses(db_session, settings, keys)
    next_key = None if last is None else [last[0].isoformat(), str(last[1]), last[2]]
    return fhir_response(fhir_search.searchset(request, search, resources, next_key))


IfNoneExist = Annotated[
    str | None,
    HeaderParameter(
        name="If-None-Exist",
        description="`identifier=[system|]value`: create only if no response has this identifier.",
    ),
]


def _conditional_key(resource: dict[str, Any], if_none_exist: str | None) -> str | None:
    """The identifier that makes the create conditional: `If-None-Exist` or the resource's own."""
    if if_none_exist is not None:
        name, _, value = if_none_exist.partition("=")
        if name.strip() != "identifier" or not value:
            raise FhirError(
                400, [Issue("If-None-Exist: only `identifier=[system|]value` is supported", "not-supported")]
            )
        system, code = fhir_search.token(value)
        return store.identifier_key(system, code)
    identifier = resource.get("identifier")
    if identifier is None:
        return None
    if not isinstance(identifier, dict) or not isinstance(identifier.get("value"), str):
        raise FhirError(
            422,
            [Issue("identifier: an Identifier with a value", "invalid", "QuestionnaireResponse.identifier")],
        )
    system = identifier.get("system")
    return store.identifier_key(system if isinstance(system, str) else None, identifier["value"])


def _check_header(resource: dict[str, Any], settings: Settings) -> None:
    issues = []
    if resource.get("status") not in ("completed", "amended"):
        issues.append(
            Issue("status: a submitted response is `completed`", "invalid", "QuestionnaireResponse.status")
        )
    canonical_ref = resource.get("questionnaire")
    if not isinstance(canonical_ref, str) or canonical_ref.partition("|")[0] != questionnaire_url(settings):
        issues.append(
            Issue(
                f"questionnaire: must be {questionnaire_url(settings)} (optionally |version)",
                "invalid",
                "QuestionnaireResponse.questionnaire",
            )
        )
    if issues:
        raise FhirError(422, issues)


@post("/QuestionnaireResponse", guards=[SUBMIT], status_code=201)
async def create_response(
    request: Request[Any, Any, Any],
    caller: Caller,
    db_session: DbSession,
    settings: ClinicSettings,
    now: Now,
    body: RawBody,
    if_none_exist: IfNoneExist = None,
) -> Response[bytes]:
    """A completed back-pain questionnaire from a portal or EHR becomes an intake, through the
    same validation and the same submission as `POST /v1/intakes`. Conditional on its
    `identifier` (or `If-None-Exist`): a known one answers 200 with the response it created."""
    try:
        resource = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise FhirError(400, [Issue(f"The body is not JSON: {exc}", "structure")]) from exc
    if not isinstance(resource, dict) or resource.get("resourceType") != "QuestionnaireResponse":
        raise FhirError(400, [Issue("The body must be a QuestionnaireResponse resource", "structure")])
    _check_header(resource, settings)
    key = _conditional_key(resource, if_none_exist)
    if key is not None and not (1 <= len(key) <= 255 and key.isascii() and key.isprintable()):
        raise FhirError(
            422,
            [
                Issue(
                    "identifier: 1-255 printable ASCII characters",
                    "invalid",
                    "QuestionnaireResponse.identifier",
                )
            ],
        )
    try:
        intake = parse_intake(
            form_from_response(settings, resource.get("item")), latest_today(now, settings.clinic_time_zone)
        )
    except AnswerError as exc:
        raise FhirError(422, exc.issues) from exc
    except UnprocessableProblem as exc:
        raise FhirError(422, [field_issue(p.field, p.message) for p in exc.errors]) from exc
    author = authors.Author(name=caller.name, at=now, source="fhir", id=caller.key_id)
    claim = store.identifier_claim(key) if key is not None else None
    stored = await submissions.submit_intake(db_session, intake, author, claim)
    created = await _responses(db_session, settings, [(stored.intake_id, 1)])
    location = f"{str(request.base_url).rstrip('/')}/fhir/R4/QuestionnaireResponse/{created[0]['id']}"
    return fhir_response(created[0], 200 if stored.replayed else 201, {"Location": location})


router = fhir_router(
    "intake",
    [
        read_questionnaire,
        read_code_system,
        read_patient,
        search_patients,
        read_response,
        search_responses,
        create_response,
    ],
)
