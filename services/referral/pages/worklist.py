"""The specialists' and front desk's referral pages: each role's first page, the worklist
(htmx-refreshed) and every referral, a referral with its clinical picture, reasons, history, links,
follow-ups and the moves the status machine allows now, and a printable letter. Role and scope as
the API: the signed-in person becomes the same `Principal` an API key would, and the same service
functions answer."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.access.auth import Principal, Role
from services.common.access.staff_sessions import StaffMember
from services.common.contracts.vocabulary import OPEN_STATUSES, Action, Priority, ReferralStatus
from services.common.errors import Conflict, InvalidFields
from services.common.http.deps import ClinicSettings, Now
from services.common.http.pages.web import Staff, form_of, redirect, render, require_staff_role
from services.common.http.pagination import decode_cursor, encode_cursor, page_of
from services.common.http.web import DbSession
from services.common.settings import Settings
from services.referral.db.models import Referral
from services.referral.followups.services import load_follow_up, mark_done
from services.referral.pages.shared import (
    ACTION_LABELS,
    ACTORS,
    CLINICIANS,
    READERS,
    page_context,
    principal_for,
)
from services.referral.referrals.actions import (
    ActionBody,
    CancelBody,
    DeclineBody,
    NoteBody,
    ResolveBody,
    ScheduleBody,
    may_act,
)
from services.referral.referrals.deps import Referrals
from services.referral.referrals.lifecycle import PRIORITIES, STATUSES, allowed_actions
from services.referral.referrals.queries import ReferralFilters, cursor_key, worklist_cursor, worklist_query
from services.referral.referrals.schemas import ClinicalPicture
from services.referral.referrals.shaping import sees_clinical, shaped_for, to_out
from services.referral.triage import Destination

#: Referrals per page of the worklist and of all referrals (a "Next" link for the rest).
WORKLIST_PAGE = 50
PATIENT_SEARCH_MAX = 100
#: What the page says after each action.
DONE = {
    "accept": "Accepted.",
    "decline": "Declined.",
    "schedule": "Appointment scheduled.",
    "complete": "Marked completed.",
    "no-show": "No-show recorded.",
    "cancel": "Cancelled.",
    "resolve": "Review resolved.",
}


def answers_of(referral: Referral) -> dict[str, Any] | None:
    """The clinical picture shaped as the intake's answers (the shared `answers` macro)."""
    if not referral.clinical:
        return None
    picture = msgspec.convert(referral.clinical, ClinicalPicture)
    patient = {**referral.patient, **msgspec.structs.asdict(picture.contact)}
    return {**{f: getattr(picture, f) for f in picture.__struct_fields__}, "patient": patient}


def _filters(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The list's filters from the query string; a value the form never offers is dropped, not
    an error page (the staff member typed or bookmarked it)."""
    q = request.query_params
    status = q.get("status") or "open"
    priority = q.get("priority") or ""
    patient = " ".join((q.get("patient") or "").split())[:PATIENT_SEARCH_MAX]
    return {
        "status": status if status in ("open", "all", *STATUSES) else "open",
        "priority": priority if priority in PRIORITIES else "",
        "destination": d if (d := q.get("destination") or "") in [x.value for x in Destination] else "",
        "patient": "" if "\x00" in patient else patient,
    }


def _after(request: Request[Any, Any, Any]) -> list[Any] | None:
    """Where the page starts: the `after` cursor of the previous page's "Next" link, or the top
    when there is none or it is not one this page gave."""
    try:
        key: list[Any] | None = decode_cursor(request.query_params.get("after"))
        if key is not None:
            worklist_cursor(key)  # another list's cursor is refused here
    except InvalidFields:
        return None
    return key


async def _worklist(
    session: AsyncSession,
    principal: Principal,
    filters: dict[str, str],
    now: dt.datetime,
    after: list[Any] | None = None,
) -> tuple[list[Referral], str | None]:
    """A page of the list and the cursor of the next page (None on the last)."""
    status, destination, priority = filters["status"], filters["destination"], filters["priority"]
    statuses: list[ReferralStatus] | None = None  # "all"
    if status == "open":
        statuses = sorted(OPEN_STATUSES)
    elif status != "all":
        statuses = [ReferralStatus(status)]
    narrowed = ReferralFilters(
        destination=Destination(destination) if destination else None,
        status=statuses,
        priority=Priority(priority) if priority else None,
    )
    query = worklist_query(
        principal, narrowed, now=now, after=after, limit=WORKLIST_PAGE, patient=filters["patient"] or None
    )
    return page_of((await session.execute(query)).scalars().all(), WORKLIST_PAGE, cursor_key)


@get("/")
async def home(staff: Staff) -> Response[Any]:
    """Each role's first page."""
    if staff.role is Role.clinician:
        return redirect("/review")
    if staff.role is Role.admin:
        return redirect("/admin/webhooks")
    return redirect("/worklist")


class ReferralPages:
    """The referral pages as one signed-in person sees them in one request (what `Referrals` is
    to the API, and built on it): the referrals in their scope, and a referral's page drawn for
    them. Provided to the handlers by name: `pages: ReferralPagesDep`."""

    def __init__(
        self,
        request: Request[Any, Any, Any],
        staff: StaffMember,
        session: AsyncSession,
        settings: Settings,
        now: dt.datetime,
    ) -> None:
        self.request = request
        self.staff = staff
        self.principal = principal_for(staff)
        self.referrals = Referrals(session, self.principal, settings, now)
        self.session = session
        self.settings = settings
        self.now = now

    async def visible(self, referral_id: uuid.UUID) -> Referral:
        """The referral in the person's scope: another destination's is a 404 page, as in the API."""
        return await self.referrals.visible(referral_id)

    def referral_page(
        self,
        referral: Referral,
        *,
        status_code: int = 200,
        template: str = "referral/referral.html",
        **context: Any,
    ) -> Template:
        principal, now = self.principal, self.now
        actions = [a for a in allowed_actions(referral.status) if may_act(principal, referral, Action(a))]
        if principal.role not in (*ACTORS, Role.admin):
            actions = []
        return render(
            self.request,
            template,
            status_code=status_code,
            **page_context(
                # As the API shows it to this person (the front desk without reasons or notes).
                referral=shaped_for(principal, to_out(referral, now)),
                answers=answers_of(referral) if sees_clinical(principal) else None,
                overdue=referral.status in OPEN_STATUSES and referral.due_by < now,
                actions=actions,
                errors=context.pop("errors", {}),
                values=context.pop("values", {}),
                title="Referral",
                **context,
            ),
        )


def provide_pages(
    request: Request[Any, Any, State], staff: Staff, db_session: DbSession, settings: ClinicSettings, now: Now
) -> ReferralPages:
    return ReferralPages(request, staff, db_session, settings, now)


#: How a page handler asks for it: `pages: ReferralPagesDep` (with `DEPENDENCIES` on its route).
ReferralPagesDep = NamedDependency[ReferralPages]
DEPENDENCIES = {"pages": Provide(provide_pages, sync_to_thread=False)}


def worklist_view(path: str, template: str) -> Any:
    @get(path, name=f"worklist{path.replace('/', '_')}", dependencies=DEPENDENCIES)
    async def view(pages: ReferralPagesDep) -> Template:
        require_staff_role(pages.staff, *READERS)
        filters = _filters(pages.request)
        after = _after(pages.request)
        items, next_cursor = await _worklist(pages.session, pages.principal, filters, pages.now, after)
        query = urlencode({k: v for k, v in filters.items() if v})
        return render(
            pages.request,
            template,
            **page_context(
                items=items,
                filters=filters,
                now=pages.now,
                query=query,
                # The self-refresh keeps the page the person is on; "Next" moves on from its last row.
                rows_query=urlencode({"after": encode_cursor(after)}) + "&" + query if after else query,
                next_query=urlencode({"after": next_cursor}) + "&" + query if next_cursor else None,
                list_path=path.removesuffix("/rows"),
                title="Worklist",
            ),
        )

    return view


def referral_view(path: str, template: str) -> Any:
    """A page of one referral (the referral itself, its printable letter), with the notice of the
    action just taken (`?done=`)."""

    @get(
        f"/referrals/{{referral_id:uuid}}{path}",
        name=f"referral{path.replace('/', '_')}",
        dependencies=DEPENDENCIES,
    )
    async def view(pages: ReferralPagesDep, referral_id: FromPath[uuid.UUID]) -> Template:
        require_staff_role(pages.staff, *READERS)
        referral = await pages.visible(referral_id)
        done = pages.request.query_params.get("done") or ""
        notice = "Follow-up marked done." if done == "follow-up" else DONE.get(done)
        return pages.referral_page(referral, template=template, notice=notice)

    return view


def _text(values: dict[str, list[str]], name: str) -> str:
    return (values.get(name) or [""])[0].strip()


def _action_body(
    action: str, values: dict[str, list[str]], time_zone: str
) -> tuple[ActionBody | None, dict[str, list[str]]]:
    """The form as the action's API body, or the errors naming each bad field."""
    errors: dict[str, list[str]] = {}
    raw: dict[str, Any] = {}
    if action in ("decline", "cancel"):
        raw["reason"] = _text(values, "reason")
        if not raw["reason"]:
            errors["reason"] = ["Give the reason."]
        if action == "decline" and _text(values, "redirect_to"):
            raw["redirect_to"] = _text(values, "redirect_to")
    elif action == "schedule":
        day, at = _text(values, "appointment_date"), _text(values, "appointment_time")
        try:
            when = dt.datetime.combine(dt.date.fromisoformat(day), dt.time.fromisoformat(at))
            raw["appointment_at"] = when.replace(tzinfo=ZoneInfo(time_zone)).isoformat()
        except ValueError:
            errors["appointment_date"] = ["Enter the appointment's date and time."]
    elif action == "resolve":
        raw = {"destination": _text(values, "destination"), "priority": _text(values, "priority")}
        if _text(values, "note"):
            raw["note"] = _text(values, "note")
    elif _text(values, "note"):
        raw["note"] = _text(values, "note")
    kinds: dict[str, type[Any]] = {
        "decline": DeclineBody,
        "cancel": CancelBody,
        "schedule": ScheduleBody,
        "resolve": ResolveBody,
    }
    if errors:
        return None, errors
    try:
        return msgspec.convert(raw, kinds.get(action, NoteBody)), {}
    except msgspec.ValidationError as exc:
        field = str(exc).rpartition("$.")[2].rstrip("`") or "form"
        return None, {field: [f"Not valid: {str(exc).split(' - at ')[0]}."]}


@post(
    "/referrals/{referral_id:uuid}/{action:str}",
    status_code=200,
    media_type=MediaType.HTML,
    dependencies=DEPENDENCIES,
)
async def act_page(pages: ReferralPagesDep, referral_id: FromPath[uuid.UUID], action: FromPath[str]) -> Any:
    """One button of the referral page: the same action as `POST /v1/referrals/{id}/<action>`.
    A move that is no longer allowed (someone else was first) is shown as a message, not an
    error page."""
    require_staff_role(pages.staff, *(CLINICIANS if action == "resolve" else ACTORS))
    if action not in ACTION_LABELS:
        raise NotFoundException("There is no such action.")
    values = await form_of(pages.request)
    body, errors = _action_body(action, values, pages.settings.clinic_time_zone)
    try:
        if body is None:
            raise InvalidFields([])
        await pages.referrals.move(referral_id, Action(action), body)
    except Conflict as exc:
        await pages.session.rollback()
        referral = await pages.visible(referral_id)
        return pages.referral_page(referral, status_code=409, conflict=str(exc.detail))
    except InvalidFields as exc:
        await pages.session.rollback()
        for problem in exc.errors:
            errors.setdefault(problem.field, []).append(problem.message)
        referral = await pages.visible(referral_id)
        return pages.referral_page(
            referral, status_code=422, errors=errors, values=values, open_action=action
        )
    return redirect(f"/referrals/{referral_id}?done={action}")


@post(
    "/follow-ups/{follow_up_id:uuid}/done",
    status_code=200,
    media_type=MediaType.HTML,
    dependencies=DEPENDENCIES,
)
async def follow_up_done(pages: ReferralPagesDep, follow_up_id: FromPath[uuid.UUID]) -> Any:
    """Mark a follow-up done, as `POST /v1/follow-ups/{id}/done`."""
    require_staff_role(pages.staff, *ACTORS)
    found = await load_follow_up(pages.session, pages.principal, follow_up_id, lock=True)
    if found is None:
        raise NotFoundException("There is no such follow-up that you can see.")
    follow_up, referral = found
    try:
        mark_done(follow_up, pages.principal, pages.now)
    except Conflict as exc:
        await pages.session.rollback()
        referral = await pages.visible(referral.id)
        return pages.referral_page(referral, status_code=409, conflict=str(exc.detail))
    await pages.session.commit()
    return redirect(f"/referrals/{referral.id}?done=follow-up")
