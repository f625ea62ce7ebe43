"""Cursor pagination for list endpoints: `?limit=` (default 50, max 200) and an opaque `?cursor=`
that encodes the sort key of the last item returned (keyset pagination: stable under inserts)."""

from __future__ import annotations

import base64
from typing import Annotated, Any

import msgspec
from litestar.params import QueryParameter

from services.common.problems import FieldProblem, UnprocessableProblem

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

#: The `limit` query parameter; out of range is a 422 naming `limit`.
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description=f"Page size (1-{MAX_LIMIT}).")]


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


def decode_cursor(cursor: str | None, shape: Any = list[Any]) -> Any:
    """The sort key an opaque cursor carries, as `shape`; a cursor this API did not give is a 422
    naming `cursor`."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=shape)
    except (ValueError, msgspec.DecodeError) as exc:
        raise UnprocessableProblem(
            [FieldProblem(field="cursor", message="Not a cursor this API gave; start without one.")]
        ) from exc


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise UnprocessableProblem(
            [FieldProblem(field="limit", message=f"must be between 1 and {MAX_LIMIT}")]
        )
    return limit
