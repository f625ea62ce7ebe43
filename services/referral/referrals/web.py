"""What the referral service's controllers share: who is calling, the app's clock, the role
guards and the problem responses they document."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from litestar.exceptions import PermissionDeniedException

from services.common.auth import Principal, Role, principal_of, require_roles
from services.common.clock import now_of
from services.common.pagination import encode_cursor
from services.common.problems import AUTH_RESPONSES, FieldProblem, UnprocessableProblem, problem_spec
from services.referral.referrals.services import DESTINATIONS

T = TypeVar("T")

__all__ = ["AUTH_RESPONSES", "now_of", "principal_of", "problem_spec"]  # shared with the controllers

#: Who may read referrals and follow-ups (a specialist only its own destination's).
READERS = require_roles(Role.front_desk, Role.specialist, Role.clinician)
#: Who may move referrals and mark follow-ups done (a specialist only its own destination's).
ACTORS = require_roles(Role.specialist, Role.clinician)
#: Who may resolve clinician reviews and read the closed-loop report.
CLINICIANS = require_roles(Role.clinician)


def one_of(field: str, value: str | None, allowed: tuple[str, ...]) -> None:
    """A 422 naming `field` and the values it takes, unless `value` is one of them."""
    if value is not None and value not in allowed:
        raise UnprocessableProblem(
            [FieldProblem(field=field, message=f"must be one of {', '.join(allowed)}", allowed=list(allowed))]
        )


def check_destination_filter(principal: Principal, destination: str | None, listing: str) -> None:
    """A known destination, and for a specialist its own: asking for another's is a 403."""
    one_of("destination", destination, DESTINATIONS)
    if principal.role is Role.specialist and destination not in (None, principal.destination):
        raise PermissionDeniedException(f"A specialist's key sees only its own destination's {listing}.")


def page_of(rows: Sequence[T], limit: int, key: Callable[[T], list[Any]]) -> tuple[list[T], str | None]:
    """The page's rows and the cursor after them, from a query that asked for `limit + 1` rows."""
    page = list(rows[:limit])
    return page, encode_cursor(key(page[-1])) if len(rows) > limit and page else None


READ_RESPONSES = {422: problem_spec("A query parameter is not valid."), **AUTH_RESPONSES}
NOT_FOUND = {404: problem_spec("No such record that this key may see.")}
WRITE_RESPONSES = {
    **AUTH_RESPONSES,
    **NOT_FOUND,
    400: problem_spec("The body is not JSON."),
    409: problem_spec("The move is not allowed now; `allowed_actions` lists those that are."),
    422: problem_spec("A field is not valid; `errors` names each by its full path."),
}
