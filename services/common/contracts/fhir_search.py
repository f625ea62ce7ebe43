"""FHIR search: the parameters a search may carry, its paging cursor, token, reference and date
filters, and the searchset Bundle it answers with."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import structlog
from litestar import Request
from sqlalchemy import ColumnElement
from sqlalchemy.orm import InstrumentedAttribute

from services.common.contracts.fhir import (
    BASE_PATH,
    COMMON_PARAMETERS,
    DEFAULT_COUNT,
    MAX_COUNT,
    bad_parameter,
)
from services.common.http.pagination import decode_cursor, encode_cursor
from services.common.http.problems import UnprocessableProblem

log = structlog.get_logger(__name__)


# -- search --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchParam:
    """A search parameter a handler takes, as the CapabilityStatement lists it."""

    name: str
    type: str
    documentation: str


@dataclass
class Search:
    """A search request's parameters: every value by name (a name may repeat), the page size and
    the cursor of the page asked for."""

    values: dict[str, list[str]]
    count: int
    after: Any
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)

    def one(self, name: str) -> str | None:
        found = self.values.get(name, [])
        if len(found) > 1:
            raise bad_parameter(name, "give it once")
        return found[0] if found else None

    def many(self, name: str) -> list[str]:
        """Repeated and comma-separated values of `name` (FHIR's OR), flattened."""
        return [part for value in self.values.get(name, []) for part in value.split(",") if part]


def search_params_of(request: Request[Any, Any, Any]) -> tuple[SearchParam, ...]:
    params: tuple[SearchParam, ...] = request.route_handler.opt.get("fhir_search", ())
    return params


def parse_search(request: Request[Any, Any, Any], cursor_shape: Any = list[Any]) -> Search:
    """The search's parameters; an unknown parameter is a 400 naming it (strict handling, so a
    misspelt filter never silently returns everything)."""
    allowed = {p.name for p in search_params_of(request)}
    values: dict[str, list[str]] = {}
    query: list[tuple[str, str]] = []
    for name, value in request.query_params.multi_items():
        if name not in allowed and name not in COMMON_PARAMETERS:
            known = ", ".join(sorted(allowed | {"_count"}))
            raise bad_parameter(name, f"not a search parameter here; known: {known}")
        if "\x00" in value:
            raise bad_parameter(name, "may not contain NUL characters")
        if name not in COMMON_PARAMETERS:
            values.setdefault(name, []).append(value)
            query.append((name, value))
    raw_count = request.query_params.get("_count")
    count = DEFAULT_COUNT
    if raw_count is not None:
        try:
            count = int(raw_count)
        except ValueError as exc:
            raise bad_parameter("_count", f"a whole number from 1 to {MAX_COUNT}") from exc
        if not 1 <= count <= MAX_COUNT:
            raise bad_parameter("_count", f"a whole number from 1 to {MAX_COUNT}")
    try:
        after = decode_cursor(request.query_params.get("_cursor"), cursor_shape)
    except UnprocessableProblem as exc:
        raise bad_parameter("_cursor", "not a cursor this server gave; start without one") from exc
    return Search(values=values, count=count, after=after, path=request.url.path, query=query)


def token(value: str) -> tuple[str | None, str]:
    """A token search value: `system|code`, `|code` (no system) or `code` (any system)."""
    if "|" in value:
        system, _, code = value.partition("|")
        return system, code
    return None, value


def reference_id(param: str, value: str, resource_type: str) -> str:
    """The id a reference search value names: `Type/id`, an absolute URL ending so, or a bare id."""
    tail = value.rstrip("/").split("/")
    if len(tail) >= 2 and tail[-2] == resource_type:
        return tail[-1]
    if len(tail) == 1:
        return value
    raise bad_parameter(param, f"expected {resource_type}/<id>, got {value!r}")


_DATE_PRECISION = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def _instant_range(raw: str) -> tuple[dt.datetime, dt.datetime]:
    """The interval a FHIR date or dateTime search value covers: [start, end)."""
    if _DATE_PRECISION.match(raw):
        parts = [int(p) for p in raw.split("-")]
        year, month, day = parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1
        start = dt.datetime(year, month, day, tzinfo=dt.UTC)
        if len(parts) == 3:
            end = start + dt.timedelta(days=1)
        elif len(parts) == 2:
            end = start.replace(year=year + (month == 12), month=month % 12 + 1)
        else:
            end = start.replace(year=year + 1)
        return start, end
    moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment, moment + dt.timedelta(microseconds=1)


def date_filters(
    name: str, values: Sequence[str], column: InstrumentedAttribute[dt.datetime]
) -> list[ColumnElement[bool]]:
    """`_lastUpdated=ge2026-01-01` and the like (prefixes eq, gt, ge, lt, le; repeat for a range)."""
    clauses: list[ColumnElement[bool]] = []
    for value in values:
        prefix, raw = (value[:2], value[2:]) if value[:2].isalpha() else ("eq", value)
        try:
            start, end = _instant_range(raw)
        except (ValueError, OverflowError) as exc:
            raise bad_parameter(name, f"not a FHIR date or dateTime: {raw!r}") from exc
        if prefix == "eq":
            clauses += [column >= start, column < end]
        elif prefix == "gt":
            clauses.append(column >= end)
        elif prefix == "ge":
            clauses.append(column >= start)
        elif prefix == "lt":
            clauses.append(column < start)
        elif prefix == "le":
            clauses.append(column < end)
        else:
            raise bad_parameter(name, f"prefix {prefix!r} is not supported; use eq, gt, ge, lt or le")
    return clauses


def searchset(
    request: Request[Any, Any, Any],
    search: Search,
    entries: Sequence[Mapping[str, Any]],
    next_key: Any,
) -> dict[str, Any]:
    """A searchset Bundle of `entries` (resources) with `self` and, when more follow, `next`."""
    base = str(request.base_url).rstrip("/")

    def link(cursor: str | None) -> str:
        params = [*search.query, ("_count", str(search.count))]
        if cursor:
            params.append(("_cursor", cursor))
        return f"{base}{search.path}?{urlencode(params)}"

    current = request.query_params.get("_cursor")
    links = [{"relation": "self", "url": link(current)}]
    if next_key is not None:
        links.append({"relation": "next", "url": link(encode_cursor(next_key))})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}{BASE_PATH}/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
            for resource in entries
        ],
    }
