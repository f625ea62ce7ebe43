"""Cursor pagination for list endpoints: `?limit=` (default 50, max 200) and an opaque `?cursor=`
that encodes the sort key of the last item returned (keyset pagination: stable under inserts)."""

from __future__ import annotations

import base64
from typing import Any, Generic, TypeVar

import msgspec

from services.common.problems import FieldProblem, UnprocessableProblem

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

T = TypeVar("T")


class Page(msgspec.Struct, Generic[T], frozen=True):
    items: list[T]
    next_cursor: str | None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise UnprocessableProblem(
            [FieldProblem(field="limit", message=f"must be between 1 and {MAX_LIMIT}")]
        )
    return limit


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> list[Any] | None:
    """The sort key a cursor carries; a cursor that is not ours is a 422 naming `cursor`."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = msgspec.json.decode(raw)
    except (ValueError, msgspec.DecodeError) as exc:
        raise UnprocessableProblem(
            [FieldProblem(field="cursor", message="not a cursor this API gave")]
        ) from exc
    if not isinstance(key, list):
        raise UnprocessableProblem([FieldProblem(field="cursor", message="not a cursor this API gave")])
    return key
