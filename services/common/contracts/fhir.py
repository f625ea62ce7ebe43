"""What both services' FHIR R4 interfaces share: the media type, OperationOutcome errors, search
parameters, searchset Bundles with paging links, and the CapabilityStatement, built from the
routes the app actually registers so it can never list what is not served.

Each service serves its own data at `/fhir/R4/`: the intake service patients, questionnaire
responses and the intake Questionnaire; the referral service ServiceRequests and Tasks. The
handlers call the same service functions as the JSON API, under the same keys and roles.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeAlias

import msgspec
import structlog
from litestar import Litestar, Request, Response, Router, get
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromPath
from litestar.routes import HTTPRoute
from litestar.types import ControllerRouterHandler

from services.common.errors import ClinicError, InvalidFields
from services.common.http.deps import ClinicSettings, Now
from services.common.http.problems import status_of
from services.common.settings import Settings

log = structlog.get_logger(__name__)

FHIR_MEDIA_TYPE = "application/fhir+json"
FHIR_VERSION = "4.0.1"
BASE_PATH = "/fhir/R4"

SNOMED = "http://snomed.info/sct"
#: SNOMED CT 279039007 |Low back pain (finding)|: what the intake questionnaire is about.
LOW_BACK_PAIN = {"system": SNOMED, "code": "279039007", "display": "Low back pain"}
ADMINISTRATIVE_GENDER = "http://hl7.org/fhir/administrative-gender"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"

#: `_count` when none is asked for, and the most one page holds.
DEFAULT_COUNT = 20
MAX_COUNT = 100
#: Query parameters every search takes besides its own.
COMMON_PARAMETERS = frozenset({"_count", "_cursor", "_format", "_pretty"})
#: A resource id in a path (checked against the FHIR `id` pattern by `check_id`).
ResourceId: TypeAlias = FromPath[str]
#: A FHIR resource id (FHIR R4 `id` datatype).
ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def canonical(settings: Settings, kind: str, name: str) -> str:
    """The canonical URL of one of the clinic's own conformance resources (CodeSystem/x, ...)."""
    return f"{settings.fhir_canonical_base}/{kind}/{name}"


def intake_fhir_base(settings: Settings) -> str:
    """The intake service's FHIR base, as the referral service's resources link to it."""
    return settings.intake_fhir_base or f"http://{settings.host}:{settings.intake_port}{BASE_PATH}"


def mrn_system(settings: Settings) -> str:
    """The identifier system of the clinic's medical record numbers."""
    return f"{settings.fhir_canonical_base}/identifier/mrn"


def mrn_identifier(settings: Settings, mrn: str) -> dict[str, Any]:
    return {
        "use": "usual",
        "type": {"coding": [{"system": IDENTIFIER_TYPE, "code": "MR", "display": "Medical record number"}]},
        "system": mrn_system(settings),
        "value": mrn,
    }


def instant(value: dt.datetime) -> str:
    """A FHIR instant/dateTime: always with its offset (UTC for naive values)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat()


def humanize(name: str) -> str:
    """`bladder_or_bowel_dysfunction` -> `Bladder or bowel dysfunction`."""
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def kebab(name: str) -> str:
    """`RedFlagAnswer` or `red_flag_answer` -> `red-flag-answer` (a valid FHIR id)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).replace("_", "-").lower()


def code_system(
    settings: Settings,
    cs_id: str,
    title: str,
    concepts: Sequence[tuple[str, str, str | None]],
    *,
    version: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """A complete CodeSystem of the clinic's own: (code, display, definition) per concept."""
    resource: dict[str, Any] = {
        "resourceType": "CodeSystem",
        "id": cs_id,
        "url": canonical(settings, "CodeSystem", cs_id),
        "name": "".join(part.capitalize() for part in cs_id.split("-")),
        "title": title,
        "status": "active",
        "publisher": "Clinic",
        "caseSensitive": True,
        "content": "complete",
        "count": len(concepts),
        "concept": [
            {"code": code, "display": display, **({"definition": definition} if definition else {})}
            for code, display, definition in concepts
        ],
    }
    if version is not None:
        resource["version"] = version
    if description:
        resource["description"] = description
    return resource


# -- responses and errors ------------------------------------------------------------------------


def fhir_response(
    resource: Mapping[str, Any], status_code: int = 200, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(
        content=msgspec.json.encode(resource),
        status_code=status_code,
        media_type=FHIR_MEDIA_TYPE,
        headers=headers,
    )


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome issue: `code` from the FHIR issue-type value set; `expression` the
    FHIRPath of the offending element (for a questionnaire answer, the item by its linkId)."""

    diagnostics: str
    code: str = "invalid"
    expression: str | None = None
    severity: str = "error"


def operation_outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": i.severity,
                "code": i.code,
                "diagnostics": i.diagnostics,
                **({"expression": [i.expression]} if i.expression else {}),
            }
            for i in issues
        ],
    }


class FhirError(HTTPException):
    """An error a FHIR handler answers with an OperationOutcome and this HTTP status."""

    def __init__(self, status_code: int, issues: Sequence[Issue]) -> None:
        super().__init__(detail="; ".join(i.diagnostics for i in issues), status_code=status_code)
        self.issues = list(issues)


def not_found(resource_type: str, resource_id: str) -> FhirError:
    return FhirError(404, [Issue(f"No {resource_type}/{resource_id} that this key may see.", "not-found")])


def bad_parameter(name: str, message: str) -> FhirError:
    return FhirError(400, [Issue(f"{name}: {message}", "invalid", name)])


_ISSUE_CODE_BY_STATUS = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    412: "multiple-matches",
    413: "too-costly",
    415: "not-supported",
    422: "invalid",
    503: "transient",
}


def _outcome_response(status: int, issues: Sequence[Issue], headers: Any = None) -> Response[bytes]:
    return fhir_response(operation_outcome(issues), status, dict(headers) if headers else None)


def _fhir_error_handler(_: Request[Any, Any, Any], exc: FhirError) -> Response[bytes]:
    return _outcome_response(exc.status_code, exc.issues, exc.headers)


def _clinic_error_handler(_: Request[Any, Any, Any], exc: ClinicError) -> Response[bytes]:
    """A rule refused the request (the same status as the JSON API's problem)."""
    status = status_of(exc)
    if isinstance(exc, InvalidFields):
        issues = [Issue(f"{p.field}: {p.message}", "invalid", p.field) for p in exc.errors]
    else:
        issues = [Issue(exc.detail, _ISSUE_CODE_BY_STATUS.get(status, "processing"))]
    return _outcome_response(status, issues)


def _validation_handler(_: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    issues = [
        Issue(f"{item.get('key') or 'request'}: {item.get('message')}", "invalid", item.get("key"))
        for item in extra
        if isinstance(item, dict)
    ] or [Issue(str(exc.detail), "invalid")]
    return _outcome_response(400, issues)


def http_error_outcome(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    detail = str(exc.detail) if exc.detail else HTTPStatus(status).phrase
    code = _ISSUE_CODE_BY_STATUS.get(status, "processing" if status < 500 else "exception")
    return _outcome_response(status, [Issue(detail, code)], exc.headers)


def _internal_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return _outcome_response(500, [Issue("An unexpected error occurred; it has been logged.", "exception")])


#: Every error on a FHIR route is an OperationOutcome (the JSON API's are RFC 9457 problems).
FHIR_EXCEPTION_HANDLERS: dict[Any, Any] = {
    FhirError: _fhir_error_handler,
    ClinicError: _clinic_error_handler,
    ValidationException: _validation_handler,
    HTTPException: http_error_outcome,
    Exception: _internal_handler,
}


def check_id(resource_type: str, resource_id: str) -> str:
    if not ID_PATTERN.match(resource_id):
        raise not_found(resource_type, resource_id)
    return resource_id


def uuid_id(resource_type: str, resource_id: str) -> uuid.UUID:
    """A resource id that is one of our UUIDs; anything else is a 404 (no such resource)."""
    try:
        return uuid.UUID(check_id(resource_type, resource_id))
    except ValueError as exc:
        raise not_found(resource_type, resource_id) from exc


# -- the CapabilityStatement ---------------------------------------------------------------------

_INTERACTIONS = {
    ("GET", ""): "search-type",
    ("POST", ""): "create",
    ("GET", "{id}"): "read",
    ("GET", "{id}/_history"): "history-instance",
    ("GET", "{id}/_history/{vid}"): "vread",
}


def _shape(rest: str) -> str:
    """A path below the resource type with its parameters named as the FHIR spec names them:
    `{resource_id}/_history/{version_id}` -> `{id}/_history/{vid}`."""
    names = iter(("{id}", "{vid}"))
    return "/".join(next(names, part) if part.startswith("{") else part for part in rest.split("/") if part)


def served_interactions(app: Litestar) -> dict[str, dict[str, Any]]:
    """What the app's FHIR routes serve, by resource type: interactions and search parameters."""
    served: dict[str, dict[str, Any]] = {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not route.path_format.startswith(BASE_PATH + "/"):
            continue
        resource_type, _, rest = route.path_format.removeprefix(BASE_PATH + "/").partition("/")
        if resource_type == "metadata":
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                interaction = _INTERACTIONS.get((method, _shape(rest)))
                if interaction is None:
                    continue
                entry = served.setdefault(resource_type, {"interactions": set(), "search": []})
                entry["interactions"].add(interaction)
                if interaction == "search-type":
                    entry["search"] = list(handler.opt.get("fhir_search", ()))
    return served


def capability_statement(app: Litestar, settings: Settings, service: str, now: dt.datetime) -> dict[str, Any]:
    served = served_interactions(app)
    resources = []
    for resource_type in sorted(served):
        entry = served[resource_type]
        resource: dict[str, Any] = {
            "type": resource_type,
            "interaction": [{"code": code} for code in sorted(entry["interactions"])],
        }
        if "read" in entry["interactions"]:
            resource["versioning"] = "versioned" if "vread" in entry["interactions"] else "no-version"
            resource["readHistory"] = "vread" in entry["interactions"]
        if "create" in entry["interactions"]:
            resource["conditionalCreate"] = True
        if entry["search"]:
            resource["searchParam"] = [
                {"name": p.name, "type": p.type, "documentation": p.documentation} for p in entry["search"]
            ]
        resources.append(resource)
    return {
        "resourceType": "CapabilityStatement",
        "id": f"clinic-{service}",
        "url": canonical(settings, "CapabilityStatement", f"clinic-{service}"),
        "name": f"Clinic{service.capitalize()}Service",
        "title": f"Clinic {service} service, FHIR R4 interface",
        "status": "active",
        "date": instant(now),
        "publisher": "Clinic",
        "kind": "instance",
        "software": {"name": f"clinic-{service}"},
        "implementation": {"description": f"The clinic's {service} service"},
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_MEDIA_TYPE, "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Every request needs `Authorization: Bearer <API key>`, with the "
                "same roles and scoping as the JSON API; errors are OperationOutcomes.",
                "security": {
                    "description": "API keys made with `clinic keys create`, sent as bearer tokens."
                },
                "resource": resources,
            }
        ],
    }


def fhir_router(service: str, route_handlers: Sequence[ControllerRouterHandler]) -> Router:
    """The service's FHIR interface at `/fhir/R4`: its handlers and `GET /metadata`, with
    OperationOutcome errors, outside the JSON API's OpenAPI document (the CapabilityStatement
    describes it)."""

    @get("/metadata", opt={"exclude_from_auth": True}, security=[{}], sync_to_thread=False)
    def metadata(request: Request[Any, Any, State], settings: ClinicSettings, now: Now) -> Response[bytes]:
        """The CapabilityStatement: exactly the FHIR interactions this service's routes serve."""
        return fhir_response(capability_statement(request.app, settings, service, now))

    return Router(
        path=BASE_PATH,
        route_handlers=[metadata, *route_handlers],
        exception_handlers=FHIR_EXCEPTION_HANDLERS,
        include_in_schema=False,
    )
