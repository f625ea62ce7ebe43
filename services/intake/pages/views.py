"""The front desk's pages on the intake service: home, new intake (with patient matching),
the intake with its routing (updated in place by htmx), amendment, versions side by side, a
printable summary, and patient search. Each calls the same service functions as the JSON API."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.auth import Role
from services.common.contracts import labels
from services.common.contracts import vocabulary as words
from services.common.contracts.intake_body import IntakeBody
from services.common.contracts.intake_form import latest_today, parse_intake
from services.common.http.deps import ClinicSettings, Now
from services.common.http.pages.web import (
    Staff,
    form_of,
    home_url,
    page_router,
    redirect,
    render,
    require_staff_role,
)
from services.common.http.problems import UnprocessableProblem
from services.common.http.web import DbSession
from services.common.settings import Settings
from services.intake.intakes import authors, patients, reads, submissions
from services.intake.intakes.schemas import Intake, IntakeStatus
from services.intake.pages.form import (
    FormState,
    add_problems,
    body_from_form,
    flatten,
    form_from_body,
    in_form_order,
    row_count,
    today_utc,
)

#: Who uses these pages (as the API: front desk submits; admin always passes).
FRONT_DESK = (Role.front_desk,)
READERS = (Role.front_desk, Role.clinician)
RECENT_URGENT = dt.timedelta(days=7)

VOCABULARY: dict[str, list[enum.Enum]] = {
    "regions": list(words.Region),
    "trends": list(words.Trend),
    "radiates_to": list(words.RadiatesTo),
    "symptoms": list(words.Symptom),
    "conditions": list(words.Condition),
    "risk_factors": list(words.RiskFactor),
    "treatments": list(words.Treatment),
    "outcomes": list(words.TreatmentOutcome),
    "answers": list(words.RedFlagAnswer),
    "complications": list(words.Complication),
    "sexes": [s for s in words.Sex if s is not words.Sex.UNKNOWN],
}


def _labels_of(values: list[enum.Enum | str]) -> str:
    return ", ".join(labels.label(v) for v in values)


OPTIONS = {k: [(str(v.value), labels.label(v)) for v in vs] for k, vs in VOCABULARY.items()}


def _common(**context: Any) -> dict[str, Any]:
    return {
        "labels": labels,
        "label": labels.label,
        "labels_of": _labels_of,
        "field_label": labels.field_label,
        "vocab": VOCABULARY,
        "options": OPTIONS,
        "red_flags": labels.RED_FLAG_QUESTIONS,
        **context,
    }


@get("/")
async def home(
    request: Request[Any, Any, State], staff: Staff, db_session: DbSession, now: Now
) -> Response[Any]:
    """The front desk's home. A specialist reads no intake: their first page is their worklist on
    the referral service (after signing in here, or from a bookmark)."""
    if staff.role is Role.specialist:
        return redirect(home_url(request, staff))
    require_staff_role(staff, *READERS)
    start = dt.datetime.combine(today_utc(now), dt.time(), tzinfo=dt.UTC)
    today, _ = await reads.list_intakes(db_session, reads.IntakeFilter(submitted_after=start), 50, None)
    waiting, _ = await reads.list_intakes(
        db_session, reads.IntakeFilter(status=IntakeStatus.SUBMITTED), 50, None
    )
    urgent, _ = await reads.list_intakes(
        db_session,
        reads.IntakeFilter(destination="urgent_care", submitted_after=now - RECENT_URGENT),
        50,
        None,
    )
    return render(request, "intake/home.html", **_common(today=today, waiting=waiting, urgent=urgent))


def _form_page(
    request: Request[Any, Any, Any], state: FormState, *, amend_of: Any = None, **context: Any
) -> Template:
    status = 422 if state.errors else 200
    state.errors = in_form_order(state.errors)
    return render(
        request, "intake/form.html", status_code=status, **_common(form=state, amend_of=amend_of, **context)
    )


@get("/intakes/new")
async def new_intake(request: Request[Any, Any, State], staff: Staff) -> Template:
    require_staff_role(staff, *FRONT_DESK)
    return _form_page(request, FormState())


def _validate(
    values: dict[str, list[str]], settings: Settings, now: dt.datetime
) -> tuple[FormState, IntakeBody | None]:
    """The form checked as the API checks its body; every error at once, what was typed kept."""
    state = FormState(values=values, rows=row_count(values))
    raw = msgspec.json.encode(body_from_form(values, state))
    try:
        body = parse_intake(raw, latest_today(now, settings.clinic_time_zone))
    except UnprocessableProblem as exc:
        problems = exc.errors
        if "duration_kind" in state.errors:
            problems = [p for p in problems if not p.message.startswith("Give onset_date or duration_weeks")]
        add_problems(state, problems)
        return state, None
    return state, (None if state.errors else body)


def _author(staff: Staff, now: dt.datetime) -> authors.Author:
    return authors.Author(name=staff.name, at=now, source="page", id=staff.user_id)


@post("/intakes/new", status_code=200, media_type=MediaType.HTML)
async def submit_new_intake(
    request: Request[Any, Any, State], staff: Staff, db_session: DbSession, settings: ClinicSettings, now: Now
) -> Any:
    require_staff_role(staff, *FRONT_DESK)
    values = await form_of(request)
    if "add_row" in values:
        state = FormState(values=values, rows=min(row_count(values) + 1, 20))
        return _form_page(request, state, focus_row=state.rows - 1)
    state, body = _validate(values, settings, now)
    if body is None:
        return _form_page(request, state)
    choice = state.value("patient_choice")
    existing: uuid.UUID | None = None
    if body.patient.mrn is None:
        if choice in ("", None):
            matches = await patients.likely_matches(db_session, body.patient)
            if matches:
                return _form_page(request, state, matches=matches)
        elif choice != "new":
            try:
                existing = uuid.UUID(choice)
            except ValueError:
                state.add_error("patient_choice", "Choose one of the patients, or a new patient.")
                return _form_page(request, state)
    try:
        stored = await submissions.submit_intake(
            db_session, body, _author(staff, now), existing_patient=existing
        )
    except UnprocessableProblem as exc:
        add_problems(state, exc.errors)
        return _form_page(request, state)
    created = msgspec.json.decode(stored.content)
    return redirect(f"/intakes/{created['id']}")


def _body_of(intake: Intake) -> IntakeBody:
    """The form part of a stored intake (what the front desk typed)."""
    return IntakeBody(**{name: getattr(intake, name) for name in IntakeBody.__struct_fields__})


async def _intake_or_404(session: AsyncSession, intake_id: uuid.UUID, version: int | None = None) -> Intake:
    intake = await reads.get_intake(session, intake_id, version)
    if intake is None:
        raise NotFoundException("There is no such intake.")
    return intake


#: The views of one intake with its routing, by the path after `/intakes/{id}`.
INTAKE_VIEWS = {
    "": "intake/intake.html",  # the intake and its routing
    "/routing": "intake/routing.html",  # the routing panel alone, polled by htmx until routed
    "/summary": "intake/summary.html",  # printable summary
}


def _intake_view(suffix: str, template: str) -> Any:
    @get(f"/intakes/{{intake_id:uuid}}{suffix}", name=f"intake{suffix.replace('/', '_')}")
    async def view(
        request: Request[Any, Any, State], staff: Staff, db_session: DbSession, intake_id: FromPath[uuid.UUID]
    ) -> Template:
        require_staff_role(staff, *READERS)
        intake = await _intake_or_404(db_session, intake_id)
        routing = await reads.routing_of(db_session, intake_id)
        return render(request, template, **_common(intake=intake, routing=routing))

    return view


@get("/intakes/{intake_id:uuid}/amend")
async def amend_page(
    request: Request[Any, Any, State], staff: Staff, db_session: DbSession, intake_id: FromPath[uuid.UUID]
) -> Template:
    require_staff_role(staff, *FRONT_DESK)
    intake = await _intake_or_404(db_session, intake_id)
    return _form_page(request, form_from_body(_body_of(intake)), amend_of=intake)


@post("/intakes/{intake_id:uuid}/amend", status_code=200, media_type=MediaType.HTML)
async def amend_submit(
    request: Request[Any, Any, State],
    staff: Staff,
    db_session: DbSession,
    settings: ClinicSettings,
    now: Now,
    intake_id: FromPath[uuid.UUID],
) -> Any:
    require_staff_role(staff, *FRONT_DESK)
    intake = await _intake_or_404(db_session, intake_id)
    values = await form_of(request)
    if "add_row" in values:
        state = FormState(values=values, rows=min(row_count(values) + 1, 20))
        return _form_page(request, state, amend_of=intake, focus_row=state.rows - 1)
    state, body = _validate(values, settings, now)
    reason = state.value("change_reason").strip()
    if not reason:
        state.add_error("change_reason", "Say why the intake is being changed.")
    elif len(reason) > 500:
        state.add_error("change_reason", "Keep the reason under 500 characters.")
    if body is None or state.errors:
        return _form_page(request, state, amend_of=intake)
    await submissions.amend_intake(db_session, intake_id, body, _author(staff, now), reason=reason)
    return redirect(f"/intakes/{intake_id}")


@get("/intakes/{intake_id:uuid}/versions")
async def versions_page(
    request: Request[Any, Any, State], staff: Staff, db_session: DbSession, intake_id: FromPath[uuid.UUID]
) -> Template:
    require_staff_role(staff, *READERS)
    found = await reads.list_versions(db_session, intake_id, 200, None)
    if found is None:
        raise NotFoundException("There is no such intake.")
    versions, _ = found
    reasons = await reads.change_reasons(db_session, intake_id)
    flat = [flatten(_body_of(v)) for v in versions]
    paths = list(dict.fromkeys(p for f in flat for p in f))
    rows = [
        {"path": p, "values": [f.get(p, "") for f in flat], "changed": len({f.get(p, "") for f in flat}) > 1}
        for p in paths
    ]
    return render(
        request,
        "intake/versions.html",
        **_common(intake=versions[-1], versions=versions, rows=rows, reasons=reasons),
    )


@get("/patients")
async def patients_page(request: Request[Any, Any, State], staff: Staff, db_session: DbSession) -> Template:
    require_staff_role(staff, *READERS)
    q = request.query_params
    wanted = {k: (q.get(k) or "").strip() for k in ("family_name", "given_name", "birth_date", "mrn")}
    errors: dict[str, list[str]] = {}
    birth: dt.date | None = None
    if wanted["birth_date"]:
        try:
            birth = dt.date.fromisoformat(wanted["birth_date"])
        except ValueError:
            errors["birth_date"] = ["Enter a real date."]
    results: list[Any] | None = None
    intakes: dict[Any, list[Any]] = {}
    if any(wanted.values()) and not errors:
        results, _ = await patients.find_patients(
            db_session,
            patients.PatientFilter(
                family_name=wanted["family_name"] or None,
                given_name=wanted["given_name"] or None,
                birth_date=birth,
                mrn=wanted["mrn"] or None,
            ),
            50,
        )
        for patient in results:
            intakes[patient.id], _ = await reads.list_intakes(
                db_session, reads.IntakeFilter(patient_id=patient.id), 10, None
            )
    return render(
        request,
        "intake/patients.html",
        **_common(wanted=wanted, results=results, intakes=intakes, errors=errors),
    )


def front_desk_pages() -> Any:
    return page_router(
        "/",
        [
            home,
            new_intake,
            submit_new_intake,
            *(_intake_view(suffix, template) for suffix, template in INTAKE_VIEWS.items()),
            amend_page,
            amend_submit,
            versions_page,
            patients_page,
        ],
    )
