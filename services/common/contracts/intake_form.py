"""The intake form at the HTTP edge, as both services read it (`POST /v1/intakes`, amendments,
inbound forms, `POST /v1/triage/preview`): decoded strictly from the raw bytes, then checked
across fields, so the same body gets the same answer wherever it is sent."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from services.common.clock import clinic_today
from services.common.contracts.intake_body import IntakeBody, check_intake, decode_intake
from services.common.errors import FieldProblem, InvalidFields, MalformedBody
from services.common.http.problems import all_field_problems, field_problems_from_msgspec


def latest_today(now: dt.datetime, time_zone: str) -> dt.date:
    """The latest date a form may carry: one day after the clinic's today, so a device a little
    ahead of the server (or a form filled in near midnight) is not refused for its own date.
    Triage counts such a date as today."""
    return clinic_today(now, time_zone) + dt.timedelta(days=1)


def _nul_fields(value: Any, path: str = "") -> list[str]:
    """Paths of strings holding NUL, which PostgreSQL text cannot store."""
    if isinstance(value, str):
        return [path] if "\x00" in value else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nul_fields(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nul_fields(v, f"{path}[{i}]")]
    return []


def _may_hold_nul(raw: bytes) -> bool:
    """Whether decoded JSON text may hold a NUL: only as the escape `\\u0000` (JSON refuses a raw
    control character in a string), so a body without one needs no walk of its strings."""
    return b"\\u0000" in raw or b"\\U0000" in raw or b"\x00" in raw


def parse_intake(raw: bytes, today: dt.date) -> IntakeBody:
    """The body as the contract defines it, decoded strictly from the raw bytes.

    Litestar's own `data` decoding converts leniently (`"intensity": "6"` becomes 6); the form's
    types are part of the contract, so the raw body is decoded again here, strictly. Raises a 400
    problem for malformed JSON and a 422 naming the field for anything else."""
    try:
        body = decode_intake(raw)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: first
        every = all_field_problems(raw, IntakeBody) or field_problems_from_msgspec(exc, IntakeBody)
        raise InvalidFields(every) from exc
    except msgspec.DecodeError as exc:
        if not raw.strip():
            raise InvalidFields(
                [FieldProblem(field="body", message="A JSON object body is required.")]
            ) from exc
        raise MalformedBody(f"The body is not valid JSON: {exc}") from exc
    problems = check_intake(body, today)
    if _may_hold_nul(raw):
        problems += [
            FieldProblem(field=path, message="Text may not contain NUL characters.")
            for path in _nul_fields(msgspec.to_builtins(body))
        ]
    if problems:
        raise InvalidFields(problems)
    return body
