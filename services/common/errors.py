"""The clinic's own errors: what the rules raise when a request cannot be done.

The services' rules know nothing of HTTP. They raise these; `services.common.http.problems` maps each
kind, in one table, to an RFC 9457 response (not found 404, not allowed 403, conflict and illegal
move 409, invalid fields 422, malformed body 400, unavailable for now 503). Anything a problem body
should carry beyond `detail` (the allowed moves, say) travels in `extra`.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "ClinicError",
    "Conflict",
    "FieldProblem",
    "IllegalTransition",
    "InvalidFields",
    "MalformedBody",
    "NotAllowed",
    "NotFound",
    "Unavailable",
]


class FieldProblem(msgspec.Struct, frozen=True, omit_defaults=True):
    """One field at fault: its full path (`complaint.intensity`), what is wrong, and for a closed
    set the values that would have been accepted."""

    field: str
    message: str
    allowed: list[str] | None = None


class ClinicError(Exception):
    """Base of the clinic's errors: a sentence for the person who asked, and extra members."""

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(ClinicError):
    """No such record, or none that this caller may see (never tell which)."""


class NotAllowed(ClinicError):
    """The caller's role (or destination) may not do this."""


class Conflict(ClinicError):
    """The request is well formed but clashes with the record's current state."""


class Unavailable(ClinicError):
    """The request is sound but cannot be served now (a busy queue, an unconfigured key); the
    same request may succeed later."""


class IllegalTransition(Conflict):
    """A move the referral status machine does not allow from the current status."""

    def __init__(self, detail: str, *, current_status: str, allowed_actions: list[str]) -> None:
        super().__init__(detail, current_status=current_status, allowed_actions=allowed_actions)


class InvalidFields(ClinicError):
    """Input that breaks a rule, naming each field at fault."""

    def __init__(self, errors: list[FieldProblem], detail: str = "The request body is not valid.") -> None:
        super().__init__(detail)
        self.errors = errors


class MalformedBody(InvalidFields):
    """The body is not JSON at all (reported on the field `body`)."""

    def __init__(self, detail: str) -> None:
        super().__init__([FieldProblem(field="body", message=detail)], detail=detail)
