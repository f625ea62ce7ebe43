"""The operator's access-audit page, on each service for its own rows (as `GET /v1/audit`, with the
same query and the same pagination): who read or changed which patient's records, searched by
patient (its id, or an MRN this service knows), by actor (a name or an id) and by time (UTC),
newest first, a page at a time."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Router, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.audit_api import AuditPage, audit_page, audit_query
from services.common.contracts import labels
from services.common.contracts.vocabulary import Role
from services.common.errors import InvalidFields
from services.common.http.deps import ServiceName
from services.common.http.pages.web import Staff, page_router, render, require_staff_role

PAGE_SIZE = 50
#: Longest value a search box takes (an MRN, a name, an id, a date and time).
FIELD_MAX = 100
FIELDS = ("patient", "actor", "since", "until")
FIELD_LABELS = {
    "patient": "Patient (id or MRN)",
    "actor": "Who (name or id)",
    "since": "From (UTC)",
    "until": "Until (UTC)",
}
#: What the page shows whatever the search.
PAGE = {"title": "Access audit", "field_labels": FIELD_LABELS, "role_labels": labels.word_labels(Role)}
DbSession = NamedDependency[AsyncSession]
#: The patient ids a service knows by an MRN (its own records: a page never reads another
#: service's schema).
MrnLookup = Callable[[AsyncSession, str], Awaitable[list[uuid.UUID]]]


def _moment(value: str, name: str, errors: dict[str, list[str]]) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        errors[name] = ["Enter a date and time, such as 2025-03-01 14:30 (UTC)."]
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


async def _patient(
    session: AsyncSession, wanted: str, by_mrn: MrnLookup | None, errors: dict[str, list[str]]
) -> tuple[uuid.UUID | None, list[uuid.UUID]]:
    """The patient searched for, and (when an MRN names none or several) what the MRN found."""
    try:
        return uuid.UUID(wanted), []
    except ValueError:
        pass
    found = await by_mrn(session, wanted) if by_mrn is not None else []
    if len(found) == 1:
        return found[0], found
    if len(found) > 1:
        errors["patient"] = ["This MRN names more than one patient here: choose one by its id."]
    elif by_mrn is None:
        errors["patient"] = ["Enter the patient's id."]
    return None, found


@dataclass
class AuditSearch:
    """The page's search: the boxes as typed (`wanted`), what is wrong with them, the patient they
    name (and what an MRN found), and the page of accesses found."""

    wanted: dict[str, str]
    errors: dict[str, list[str]] = field(default_factory=dict)
    patient_id: uuid.UUID | None = None
    mrn_found: list[uuid.UUID] = field(default_factory=list)
    page: AuditPage = field(default_factory=lambda: AuditPage(items=[], next_cursor=None))

    @property
    def no_such_patient(self) -> bool:
        """An MRN that names no patient here (a search for nobody: no rows are read)."""
        return bool(self.wanted["patient"]) and self.patient_id is None and not self.errors

    @property
    def query(self) -> str:
        """The search as a query string (for the other service's page)."""
        return urlencode({k: v for k, v in self.wanted.items() if v})

    @property
    def next_query(self) -> str | None:
        """The next page's query string; None on the last page."""
        if not self.page.next_cursor:
            return None
        return urlencode({**{k: v for k, v in self.wanted.items() if v}, "cursor": self.page.next_cursor})


async def _search(
    session: AsyncSession, params: Mapping[str, str], service: str, by_mrn: MrnLookup | None
) -> AuditSearch:
    """The page's search checked as `GET /v1/audit` checks it, then run (a page at a time)."""
    wanted = {name: " ".join((params.get(name) or "").split())[:FIELD_MAX] for name in FIELDS}
    search = AuditSearch({k: "" if "\x00" in v else v for k, v in wanted.items()})
    if search.wanted["patient"]:
        search.patient_id, search.mrn_found = await _patient(
            session, search.wanted["patient"], by_mrn, search.errors
        )
    since = _moment(search.wanted["since"], "since", search.errors)
    until = _moment(search.wanted["until"], "until", search.errors)
    if since and until and since >= until:
        search.errors["until"] = ["Must be later than “From”."]
    if search.errors or search.no_such_patient:
        return search
    actor = search.wanted["actor"] or None
    query = audit_query(service=service, patient_id=search.patient_id, actor=actor, since=since, until=until)
    try:
        search.page = await audit_page(session, query, PAGE_SIZE, params.get("cursor") or None)
    except InvalidFields:  # a cursor this page did not give: from the top
        search.page = await audit_page(session, query, PAGE_SIZE, None)
    return search


def audit_pages(by_mrn: MrnLookup | None = None) -> Router:
    """`/admin/audit`: admin only, as `GET /v1/audit`."""

    @get("/admin/audit")
    async def audit_view(
        request: Request[Any, Any, State], staff: Staff, db_session: DbSession, service_name: ServiceName
    ) -> Template:
        require_staff_role(staff)  # admin only
        search = await _search(db_session, request.query_params, service_name, by_mrn)
        return render(
            request,
            "audit.html",
            status_code=422 if search.errors else 200,
            service=service_name,
            search=search,
            **PAGE,
        )

    return page_router("/", [audit_view])
