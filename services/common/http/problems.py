"""RFC 9457 problem responses for every error both services return.

Litestar reports a body validation failure as a 400 with msgspec's first error, naming the parent
object for a missing or unknown field and leaving out an enum's allowed values. Front-desk staff
and integrators need the exact field and the values that would have been accepted, so the
handler here rebuilds the full path (`complaint.intensity`) from the message and looks the enum
up on the handler's body type.
"""

from __future__ import annotations

import enum
import re
import typing
from http import HTTPStatus
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsPlugin,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy import exc as sa_exc

from services.common.errors import (
    ClinicError,
    Conflict,
    InvalidFields,
    MalformedBody,
    NotAllowed,
    NotFound,
    Unavailable,
)
from services.common.errors import (
    FieldProblem as FieldProblem,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = structlog.get_logger(__name__)

_FIELD_IN_MESSAGE = re.compile(r"^Object (missing required|contains unknown) field `([^`]+)`$")
_INDEX = re.compile(r"\[\d+\]")


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem: every error either service answers has this body
    (`application/problem+json`). Bad input names each field at fault in `errors`; a refused move
    adds the moves that are allowed (`allowed_actions`)."""

    #: `about:blank`: the status and title say all there is.
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] | None = None
    #: On a refused move (409): the status the record is in, and the moves allowed from it.
    current_status: str | None = None
    allowed_actions: list[str] | None = None


def problem_spec(description: str) -> ResponseSpec:
    """An RFC 9457 response as the OpenAPI document declares it."""
    return ResponseSpec(
        data_container=Problem,
        description=description,
        media_type=PROBLEM_MEDIA_TYPE,
        generate_examples=False,  # `services.common.http.openapi` gives each status a realistic one
    )


#: What every protected route may answer before it runs.
AUTH_RESPONSES = {
    401: problem_spec("No API key, or not a valid one."),
    403: problem_spec("The key's role (or destination) may not do this."),
}


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: list[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    problem = Problem(
        type="about:blank",
        title=title or HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        errors=errors,
    )
    body: dict[str, Any] = msgspec.to_builtins(problem)
    body.update(extra)
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


# The names the edge used before the clinic's errors had their own home.
ConflictProblem = Conflict
UnprocessableProblem = InvalidFields
MalformedBodyProblem = MalformedBody

#: The one mapping from the clinic's errors to HTTP statuses (most specific kind first).
STATUS_OF: dict[type[ClinicError], int] = {
    NotFound: 404,
    NotAllowed: 403,
    Conflict: 409,
    MalformedBody: 400,
    InvalidFields: 422,
    Unavailable: 503,
}


def _unwrap(tp: Any) -> Any:
    """Strip Annotated/Optional/list down to the type that a path step lands on."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else tp
    return tp


def _type_at(root: Any, path: str) -> Any:
    tp: Any = root
    for step in [p for p in _INDEX.sub(".[]", path).split(".") if p]:
        tp = _unwrap(tp)
        if step == "[]":
            args = typing.get_args(tp)
            tp = args[0] if args else Any
            continue
        try:
            hints = typing.get_type_hints(tp, include_extras=True)
        except TypeError:
            return None
        if step not in hints:
            return None
        tp = hints[step]
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (list, tuple, set, frozenset):
        tp = _unwrap(typing.get_args(tp)[0])
    return tp


def _handler_hints(request: Request[Any, Any, Any]) -> dict[str, Any]:
    fn = getattr(request.route_handler, "fn", None)
    if fn is None:
        return {}
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # a handler with unresolvable hints simply gets no enum help
        return {}


def _allowed_values(target: Any) -> list[str] | None:
    if isinstance(target, type) and issubclass(target, enum.Enum):
        return [str(m.value) for m in target]
    return None


def field_problems_from_validation(
    extra: Any, body_type: Any = None, param_types: dict[str, Any] | None = None
) -> tuple[list[FieldProblem], str]:
    """Turn Litestar's `extra` list into precise field problems; return them and a detail line.

    `body_type` (the handler's `data` type) and `param_types` (its other parameters' types, by
    name) let an enum error list the allowed values."""
    problems: list[FieldProblem] = []
    items = extra if isinstance(extra, list) else []
    for item in items:
        if not isinstance(item, dict):
            continue
        key = str(item.get("key") or "")
        message = str(item.get("message") or "invalid value")
        source = item.get("source")
        if source not in (None, "body"):
            allowed = _allowed_values(_unwrap((param_types or {}).get(key)))
            if allowed is not None and message.startswith("Invalid enum value"):
                message = f"{message}; allowed: {', '.join(allowed)}"
            else:
                allowed = None
            problems.append(FieldProblem(field=key or str(source), message=message, allowed=allowed))
            continue
        path = "" if key == "data" else key
        match = _FIELD_IN_MESSAGE.match(message)
        if match:
            path = f"{path}.{match.group(2)}" if path else match.group(2)
            message = "This field is required." if match.group(1) == "missing required" else "Unknown field."
        elif message == "'data'":
            path, message = "body", "A JSON object body is required."
        allowed = None
        if message.startswith("Invalid enum value") and body_type is not None:
            allowed = _allowed_values(_type_at(body_type, path))
            if allowed is not None:
                message = f"{message}; allowed: {', '.join(allowed)}"
        problems.append(FieldProblem(field=path or "body", message=message, allowed=allowed))
    detail = "; ".join(f"{p.field}: {p.message}" for p in problems) or "The request is not valid."
    return problems, detail


_MSGSPEC_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def field_problems_from_msgspec(exc: msgspec.ValidationError, body_type: Any) -> list[FieldProblem]:
    """The field problems of a body decoded by msgspec itself (strictly, from the raw bytes),
    in the same form as those of Litestar's `data` parameter."""
    match = _MSGSPEC_PATH.match(str(exc))
    message, path = (match.group("message"), match.group("path") or "") if match else (str(exc), "")
    item = {"message": message, "key": path.removeprefix(".") or "data", "source": "body"}
    return field_problems_from_validation([item], body_type)[0]


def _struct_type(tp: Any) -> type[msgspec.Struct] | None:
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, msgspec.Struct) else None


def _collect(value: Any, tp: Any, path: str, out: list[dict[str, Any]]) -> None:
    """Check `value` against `tp`, appending one item per bad field (Litestar's `extra` shape)."""
    struct = _struct_type(tp)
    if struct is not None and isinstance(value, dict):
        fields = {f.encode_name: f for f in msgspec.structs.fields(struct)}
        for name, info in fields.items():
            if name in value:
                _collect(value[name], info.type, f"{path}.{name}" if path else name, out)
            elif info.required:
                out.append({"message": f"Object missing required field `{name}`", "key": path or "data"})
        if struct.__struct_config__.forbid_unknown_fields:
            for name in value:
                if name not in fields:
                    out.append({"message": f"Object contains unknown field `{name}`", "key": path or "data"})
        return
    inner = _unwrap(tp)
    if typing.get_origin(inner) is list and isinstance(value, list):
        item_type = typing.get_args(inner)[0]
        if _struct_type(item_type) is not None:
            if not value:  # the list's own bounds (an empty list may be too short)
                try:
                    msgspec.convert(value, tp, strict=True)
                except msgspec.ValidationError as exc:
                    out.append({"message": str(exc), "key": path})
            for i, item in enumerate(value):
                _collect(item, item_type, f"{path}[{i}]", out)
            return
    try:
        msgspec.convert(value, tp, strict=True)
    except msgspec.ValidationError as exc:
        match = _MSGSPEC_PATH.match(str(exc))
        message, sub = (match.group("message"), match.group("path") or "") if match else (str(exc), "")
        out.append({"message": message, "key": f"{path}{sub}" if sub.startswith("[") else path + sub})


def all_field_problems(raw: bytes, body_type: Any) -> list[FieldProblem]:
    """Every bad field of a JSON body, not only the first one msgspec stops at (empty if the body
    is not a JSON object: the caller's own error stands then)."""
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return []
    if _struct_type(body_type) is None or not isinstance(value, dict):
        return []
    items: list[dict[str, Any]] = []
    _collect(value, body_type, "", items)
    return field_problems_from_validation([{**i, "source": "body"} for i in items], body_type)[0]


def _validation_handler(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    hints = _handler_hints(request)
    problems, detail = field_problems_from_validation(exc.extra, hints.get("data"), hints)
    raw = request._connection_state.body  # read before validation failed; never read again here
    if problems and isinstance(raw, bytes) and (every := all_field_problems(raw, hints.get("data"))):
        problems, detail = every, "; ".join(f"{p.field}: {p.message}" for p in every)
    if not problems:  # malformed JSON and the like: Litestar gives no field
        problems = [FieldProblem(field="body", message=str(exc.detail))]
        detail = str(exc.detail)
        status = 400
    else:
        status = 422
    return problem_response(status, detail, title="Invalid request", errors=problems)


def status_of(exc: ClinicError) -> int:
    """The HTTP status of a clinic error, from `STATUS_OF`."""
    return next((code for kind, code in STATUS_OF.items() if isinstance(exc, kind)), 400)


def _clinic_error_handler(request: Request[Any, Any, Any], exc: ClinicError) -> Response[Any]:
    """A rule refused the request: its problem, with the status `STATUS_OF` gives its kind."""
    status = status_of(exc)
    if isinstance(exc, InvalidFields):
        detail = "; ".join(f"{p.field}: {p.message}" for p in exc.errors)
        return problem_response(status, detail, title="Invalid request", errors=exc.errors)
    return problem_response(status, exc.detail, **exc.extra)


def _http_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if request.url.path.startswith("/fhir/"):  # no route or method there: still FHIR's error shape
        from services.common.contracts.fhir import http_error_outcome  # fhir.py imports this module

        return http_error_outcome(request, exc)
    status = exc.status_code
    detail = str(exc.detail) if exc.detail else HTTPStatus(status).phrase
    # Litestar turns a body msgspec cannot parse ("Input data was truncated", "JSON is malformed:
    # ...") into a bare 400 whose cause is a SerializationException.
    if status == 400 and isinstance(exc.__cause__, SerializationException):
        return problem_response(
            400, detail, title="Invalid request", errors=[FieldProblem(field="body", message=detail)]
        )
    if status == 413:
        detail = "The request body is too large."
        return problem_response(
            413, detail, errors=[FieldProblem(field="body", message=detail)], headers=exc.headers
        )
    extra = exc.extra if isinstance(exc.extra, dict) else {}
    return problem_response(status, detail, headers=exc.headers, **extra)


#: Seconds a client is asked to wait before retrying while the database is unavailable.
RETRY_AFTER_SECONDS = 2

# SQLSTATEs that say "not now" rather than "wrong": the connection classes (08...), the server
# shutting down or starting up (57P01-57P03), a statement or lock timeout (57014, 55P03) and too
# many connections (53300).
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57014", "55P03", "53300"})


def database_unavailable(exc: BaseException) -> str | None:
    """Why `exc` means the database cannot serve this request right now (so a retry later may
    succeed), or None when it is something else. Looks through the exception's causes: the
    driver's errors arrive wrapped by SQLAlchemy, or raw (an OSError from the socket, when the
    server is down while a pooled connection is being opened)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.TimeoutError):
            return "no database connection free in the pool"
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return "the database connection was lost"
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and (sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES):
            return f"the database answered SQLSTATE {sqlstate}"
        if isinstance(current, OSError):  # refused, reset, socket gone, connect timeout
            return "the database cannot be reached"
        if type(current).__module__.startswith("asyncpg") and "Connection" in type(current).__name__:
            return "the database connection was lost"  # ConnectionDoesNotExistError and kin
        current = current.__cause__ or current.__context__
    return None


def unavailable_response(reason: str) -> Response[dict[str, Any]]:
    """A retryable 503 with `Retry-After` (an intake sent with an Idempotency-Key is safe to
    retry even if its commit got through before the connection was lost)."""
    return problem_response(
        503,
        "The database is unavailable for the moment; retry shortly.",
        title="Service Unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        reason=reason,
    )


def _internal_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    reason = database_unavailable(exc)
    if reason is not None:
        # An outage is expected now and then: a warning with the cause's type, no traceback.
        log.warning("database_unavailable", error_type=type(exc).__name__, reason=reason)
        return unavailable_response(reason)
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return problem_response(
        HTTP_500_INTERNAL_SERVER_ERROR, "An unexpected error occurred; it has been logged."
    )


def problem_details_plugin() -> ProblemDetailsPlugin:
    return ProblemDetailsPlugin(ProblemDetailsConfig(enable_for_all_http_exceptions=False))


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ValidationException: _validation_handler,
    ClinicError: _clinic_error_handler,
    HTTPException: _http_handler,
    Exception: _internal_handler,
}
