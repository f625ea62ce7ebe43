"""What the referral service's controllers share: the role guards, the problem responses they
document, the destination filter and the worklist route."""

from __future__ import annotations

from typing import TypeVar

from litestar import get
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromQuery

from services.common.access.auth import Principal, Role, require_roles
from services.common.contracts.vocabulary import Destination
from services.common.http.problems import AUTH_RESPONSES, problem_spec

T = TypeVar("T")

__all__ = ["AUTH_RESPONSES", "problem_spec"]  # shared with the controllers

#: Who may read referrals and follow-ups (a specialist only its own destination's).
READERS = require_roles(Role.front_desk, Role.specialist, Role.clinician)
#: Who may move referrals and mark follow-ups done (a specialist only its own destination's).
ACTORS = require_roles(Role.specialist, Role.clinician)
#: Who may resolve clinician reviews and read the closed-loop report.
CLINICIANS = require_roles(Role.clinician)


#: A `?destination=` filter: an enum, so a wrong value is a 422 listing the allowed ones.
DestinationFilter = FromQuery[Destination | None]


def check_destination_filter(principal: Principal, destination: str | None, listing: str) -> None:
    """For a specialist, its own destination only: asking for another's is a 403."""
    if principal.role is Role.specialist and destination not in (None, principal.destination):
        raise PermissionDeniedException(f"A specialist's key sees only its own destination's {listing}.")


READ_RESPONSES = {422: problem_spec("A query parameter is not valid."), **AUTH_RESPONSES}


def list_route(operation_id: str, summary: str) -> get:
    """The route of a worklist, `GET /` under its controller, for those who read referrals."""
    return get("/", operation_id=operation_id, summary=summary, guards=[READERS], responses=READ_RESPONSES)


NOT_FOUND = {404: problem_spec("No such record that this key may see.")}
WRITE_RESPONSES = {
    **AUTH_RESPONSES,
    **NOT_FOUND,
    400: problem_spec("The body is not JSON."),
    409: problem_spec("The move is not allowed now; `allowed_actions` lists those that are."),
    422: problem_spec("A field is not valid; `errors` names each by its full path."),
}
