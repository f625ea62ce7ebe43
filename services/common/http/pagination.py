"""Cursor pagination for list endpoints: `?limit=` (default 50, max 200) and an opaque `?cursor=`
that encodes the sort key of the last item returned (keyset pagination: stable under inserts)."""

from __future__ import annotations

import base64
import dataclasses
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar, TypeVarTuple

import msgspec
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, QueryParameter
from sqlalchemy import Select, and_, or_, tuple_

from services.common.errors import FieldProblem, InvalidFields

T = TypeVar("T")
Row = TypeVarTuple("Row")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

#: The `limit` query parameter; out of range is a 422 naming `limit`.
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description=f"Page size (1-{MAX_LIMIT}).")]


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


def bad_cursor() -> InvalidFields:
    """The 422 for a cursor this API did not give (or one of another list)."""
    return InvalidFields(
        [FieldProblem(field="cursor", message="Not a cursor this API gave; start without one.")]
    )


def decode_cursor(cursor: str | None, shape: Any = list[Any]) -> Any:
    """The sort key an opaque cursor carries, as `shape`; a cursor this API did not give is a 422
    naming `cursor`."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=shape)
    except (ValueError, msgspec.DecodeError, RecursionError) as exc:  # RecursionError: nested deep
        raise bad_cursor() from exc


def page_of(rows: Sequence[T], limit: int, key: Callable[[T], Any]) -> tuple[list[T], str | None]:
    """The page's rows and the cursor after them, from a query that asked for `limit + 1` rows."""
    page = list(rows[:limit])
    return page, encode_cursor(key(page[-1])) if len(rows) > limit and page else None


def newest_first(query: Select[Any], at: Any, id_: Any, cursor: str | None) -> Select[Any]:
    """`query` ordered newest first on the columns `(at, id_)`, from after the cursor's row."""
    key = decode_cursor(cursor, tuple[datetime, uuid.UUID])
    if key is not None:
        after_at, after_id = key
        query = query.where(or_(at < after_at, and_(at == after_at, id_ < after_id)))
    return query.order_by(at.desc(), id_.desc())


def newest_after(query: Select[*Row], columns: Sequence[Any], after: Sequence[Any] | None) -> Select[*Row]:
    """`query` newest first on the sort key `columns`, from after the row whose key is `after`
    (None: from the top)."""
    if after is not None:
        query = query.where(tuple_(*columns) < tuple_(*after))
    return query.order_by(*(column.desc() for column in columns))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Paging:
    """A list's page as the query string asks for it: how many (`?limit=`), and after the
    previous page (its `next_cursor`). Every paged list reads these two the same way."""

    limit: Limit = DEFAULT_LIMIT
    cursor: FromQuery[str | None] = None


#: How a handler asks for it: `page: PagingDep` (with `PAGING` among its dependencies).
PagingDep = NamedDependency[Paging]
PAGING = {"page": Provide(Paging, sync_to_thread=False)}
