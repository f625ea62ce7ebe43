"""The referral service's FHIR R4 interface: `ServiceRequest` and `Task` per referral (read,
search, and the Task's history), the destinations as `HealthcareService`, and the clinic's
CodeSystems.

Same keys, roles and scope as `/v1/referrals`: front desk, specialists and clinicians read (admin
always); a specialist sees its own destination's referrals only, another's is a 404 like any
record it may not see, and a search naming another destination is a 403. One referral is read
with `load_visible` and a search is `worklist_query`, the JSON API's own functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import SkipValidation
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.auth import Principal
from services.common.contracts.fhir import ResourceId, fhir_response, fhir_router, not_found, uuid_id
from services.common.contracts.fhir_search import (
    SearchParam,
    date_filters,
    parse_search,
    reference_id,
    searchset,
)
from services.common.contracts.vocabulary import ReferralStatus
from services.common.http.deps import Caller, ClinicSettings, Now
from services.common.http.web import DbSession
from services.common.settings import Settings
from services.referral.db.models import Referral
from services.referral.fhir.resources import (
    REQUEST_STATUS,
    TASK_STATUS,
    code_systems,
    destination_of,
    healthcare_service,
    service_request,
    task,
    task_versions,
)
from services.referral.referrals.deps import load_visible
from services.referral.referrals.queries import ReferralFilters, cursor_key, worklist_query
from services.referral.referrals.web import READERS, check_destination_filter


@get("/CodeSystem/{resource_id:str}", sync_to_thread=False)
def read_code_system(settings: ClinicSettings, resource_id: ResourceId) -> Response[bytes]:
    """Triage rules, destinations and referral statuses (any valid key)."""
    found = code_systems(settings).get(resource_id)
    if found is None:
        raise not_found("CodeSystem", resource_id)
    return fhir_response(found)


@get("/HealthcareService/{resource_id:str}", sync_to_thread=False)
def read_healthcare_service(settings: ClinicSettings, resource_id: ResourceId) -> Response[bytes]:
    """A destination a referral is sent to (any valid key)."""
    destination = destination_of(resource_id)
    if destination is None:
        raise not_found("HealthcareService", resource_id)
    return fhir_response(healthcare_service(settings, destination))


async def _visible(
    caller: Principal, session: AsyncSession, resource_type: str, resource_id: ResourceId
) -> Referral:
    return await load_visible(session, caller, uuid_id(resource_type, resource_id))


def read_route(resource_type: str, render: Callable[[Settings, Referral], dict[str, Any]]) -> Any:
    """`GET /<resource_type>/{id}`: a referral the caller may see, as that resource."""

    @get(f"/{resource_type}/{{resource_id:str}}", guards=[READERS], name=f"read_{resource_type}")
    async def read(
        caller: Caller, settings: ClinicSettings, db_session: DbSession, resource_id: ResourceId
    ) -> Response[bytes]:
        return fhir_response(render(settings, await _visible(caller, db_session, resource_type, resource_id)))

    return read


async def provide_task(caller: Caller, db_session: DbSession, resource_id: ResourceId) -> Referral:
    """The referral whose Task the path names, if the caller may see it."""
    return await _visible(caller, db_session, "Task", resource_id)


#: How a Task's history handlers ask for its referral: `referral: TaskReferral`.
TaskReferral = NamedDependency[SkipValidation[Referral]]
TASK = {"referral": Provide(provide_task)}


@get("/Task/{resource_id:str}/_history", guards=[READERS], dependencies=TASK)
async def task_history(
    request: Request[Any, Any, State], settings: ClinicSettings, referral: TaskReferral
) -> Response[bytes]:
    """Every version of the Task, newest first: one per entry of the referral's history."""
    base = str(request.base_url).rstrip("/")
    entries = []
    for version in range(task_versions(referral), 0, -1):
        resource = task(settings, referral, version)
        entries.append(
            {
                "fullUrl": f"{base}/fhir/R4/Task/{referral.id}",
                "resource": resource,
                "request": {
                    "method": "POST" if version == 1 else "PUT",
                    "url": "Task" if version == 1 else f"Task/{referral.id}",
                },
                "response": {
                    "status": "201 Created" if version == 1 else "200 OK",
                    "lastModified": resource["meta"]["lastUpdated"],
                },
            }
        )
    bundle = {"resourceType": "Bundle", "type": "history", "total": len(entries), "entry": entries}
    return fhir_response(bundle)


@get("/Task/{resource_id:str}/_history/{version_id:str}", guards=[READERS], dependencies=TASK)
async def read_task_version(
    settings: ClinicSettings, referral: TaskReferral, resource_id: ResourceId, version_id: ResourceId
) -> Response[bytes]:
    if not version_id.isdigit() or not 1 <= int(version_id) <= task_versions(referral):
        raise not_found("Task", f"{resource_id}/_history/{version_id}")
    return fhir_response(task(settings, referral, int(version_id)))


def _search_params(performer: str) -> tuple[SearchParam, ...]:
    return (
        SearchParam(
            "patient", "reference", "The patient: `Patient/<id>` (the intake service's id) or the id."
        ),
        SearchParam("status", "token", "The FHIR status; comma-separated values are alternatives."),
        SearchParam(performer, "reference", "The destination: `HealthcareService/<id>` or the id."),
        SearchParam("_lastUpdated", "date", "When the referral last changed (eq/gt/ge/lt/le)."),
    )


def search_route(
    resource_type: str,
    status_map: dict[str, str],
    performer: str,
    render: Callable[[Settings, Referral], dict[str, Any]],
) -> Any:
    """`GET /<resource_type>`: a worklist query (most urgent first, then soonest due) with the
    FHIR filters on top, the referrals as that resource."""

    @get(
        f"/{resource_type}",
        guards=[READERS],
        opt={"fhir_search": _search_params(performer)},
        name=f"search_{resource_type}",
    )
    async def search_type(
        request: Request[Any, Any, State],
        caller: Caller,
        settings: ClinicSettings,
        now: Now,
        db_session: DbSession,
    ) -> Response[bytes]:
        search = parse_search(request)
        codes = search.many("status")
        statuses = [s for s in ReferralStatus if status_map[s] in codes] if codes else None
        destination = None
        if (service := search.one(performer)) is not None:
            destination = destination_of(reference_id(performer, service, "HealthcareService"))
            check_destination_filter(caller, destination, "referrals")
        nothing = (codes and not statuses) or (service is not None and destination is None)
        filters = ReferralFilters(destination=destination, status=statuses)
        query = worklist_query(caller, filters, now=now, after=search.after, limit=search.count).where(
            *date_filters("_lastUpdated", search.values.get("_lastUpdated", []), Referral.updated_at)
        )
        if (patient := search.one("patient")) is not None:
            query = query.where(
                Referral.patient["patient_id"].astext == reference_id("patient", patient, "Patient")
            )
        rows = [] if nothing else list((await db_session.execute(query)).scalars().all())
        page = rows[: search.count]
        next_key = cursor_key(page[-1]) if len(rows) > search.count else None
        return fhir_response(searchset(request, search, [render(settings, r) for r in page], next_key))

    return search_type


router = fhir_router(
    "referral",
    [
        read_code_system,
        read_healthcare_service,
        read_route("ServiceRequest", service_request),
        search_route("ServiceRequest", REQUEST_STATUS, "performer", service_request),
        read_route("Task", task),
        search_route("Task", TASK_STATUS, "owner", task),
        task_history,
        read_task_version,
    ],
)
