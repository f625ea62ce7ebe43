"""The operator's access-audit page, on each service for its own rows (as `GET /v1/audit`, with the
same query and the same pagination): who read or changed which patient's records, searched by
patient (its id, or an MRN this service knows), by actor (a name or an id) and by time (UTC),
newest first, a page at a time."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
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


def audit_pages(by_mrn: MrnLookup | None = None) -> Router:
    """`/admin/audit`: admin only, as `GET /v1/audit`."""

    @get("/admin/audit")
    async def audit_view(request: Request[Any, Any, State], staff: Staff, db_session: DbSession) -> Template:
        require_staff_role(staff)  # admin only
        params = request.query_params
        wanted = {name: " ".join((params.get(name) or "").split())[:FIELD_MAX] for name in FIELDS}
        wanted = {k: "" if "\x00" in v else v for k, v in wanted.items()}
        errors: dict[str, list[str]] = {}
        patient_id, mrn_found = (
            (None, [])
            if not wanted["patient"]
            else await _patient(db_session, wanted["patient"], by_mrn, errors)
        )
        since = _moment(wanted["since"], "since", errors)
        until = _moment(wanted["until"], "until", errors)
        if since and until and since >= until:
            errors["until"] = ["Must be later than “From”."]
        no_such_patient = bool(wanted["patient"]) and patient_id is None and not errors
        page = AuditPage(items=[], next_cursor=None)
        if not errors and not no_such_patient:
            query = audit_query(
                service=request.app.state["clinic_service"],
                patient_id=patient_id,
                actor=wanted["actor"] or None,
                since=since,
                until=until,
            )
            try:
                page = await audit_page(db_session, query, PAGE_SIZE, params.get("cursor") or None)
            except InvalidFields:  # a cursor this page did not give: from the top
                page = await audit_page(db_session, query, PAGE_SIZE, None)
        search = {k: v for k, v in wanted.items() if v}
        return render(
            request,
            "audit.html",
            status_code=422 if errors else 200,
            title="Access audit",
            service=request.app.state["clinic_service"],
            wanted=wanted,
            errors=errors,
            field_labels=FIELD_LABELS,
            patient_id=patient_id,
            mrn_found=mrn_found,
            no_such_patient=no_such_patient,
            items=page.items,
            search_query=urlencode(search),
            next_query=urlencode({**search, "cursor": page.next_cursor}) if page.next_cursor else None,
            role_labels=labels.word_labels(Role),
        )

    return page_router("/", [audit_view])
