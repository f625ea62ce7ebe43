"""Page plumbing: the session read on every page, CSRF, headers, templates and the sign-in pages.

- The session cookie (`clinic_session`) holds a random token; `access.sessions` holds its hash.
  HttpOnly, SameSite=Lax, Secure when the page is served over HTTPS. Pages only: the JSON API
  keeps its bearer keys, and a session cookie opens nothing there.
- CSRF: a double-submit token. Every page response carries a random `clinic_csrf` cookie
  (SameSite=Strict) and every form a hidden `_csrf` field with the same value; a POST to a page
  whose field does not match the cookie is refused with a 403 before its handler runs.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import quote, urlsplit

import structlog
from litestar import MediaType, Request, Response, Router, get, post
from litestar.datastructures import CacheControlHeader, Cookie, State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from litestar.types import ControllerRouterHandler

from services.common.access import accounts, staff_sessions
from services.common.access.auth import Role
from services.common.access.staff_sessions import StaffMember
from services.common.errors import ClinicError
from services.common.http.deps import ClinicSettings, Now
from services.common.http.problems import status_of
from services.common.settings import Settings

log = structlog.get_logger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "clinic_session"
CSRF_COOKIE = "clinic_csrf"
CSRF_FIELD = "_csrf"
#: The person signed in, as a page handler's parameter.
Staff: TypeAlias = NamedDependency[StaffMember]


class SignInRequired(Exception):
    """No open session: the page sends the person to the sign-in page and back afterwards."""


class CsrfRefused(HTTPException):
    status_code = 403


def template_config(extra_dirs: Sequence[Path] = ()) -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(directory=[HERE / "templates", *extra_dirs], engine=JinjaTemplateEngine)


def _settings(request: Request[Any, Any, Any]) -> Settings:
    """The settings, for `render` (which error handlers call too: they have no providers)."""
    settings: Settings = request.app.state["clinic_settings"]
    return settings


def _attempt(request: Request[Any, Any, Any], now: datetime) -> staff_sessions.Attempt:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return staff_sessions.Attempt(
        client_address=request.client.host if request.client else None,
        request_id=str(request_id) if request_id else None,
        at=now,
    )


def _maker(request: Request[Any, Any, Any]) -> Any:
    return request.app.state["clinic_sessionmaker"]


async def current_staff(
    request: Request[Any, Any, Any], settings: Settings, now: datetime
) -> StaffMember | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return None
    async with _maker(request)() as session:
        staff = await staff_sessions.staff_for_token(
            session,
            token,
            now,
            settings,
            # htmx's polling (HX-Request) must not keep an unattended workstation signed in.
            touch=not request.headers.get("hx-request"),
        )
        await session.commit()
    return staff


async def provide_staff(request: Request[Any, Any, State], settings: ClinicSettings, now: Now) -> StaffMember:
    """The page's signed-in person; anyone else goes to the sign-in page. Until a temporary
    password is changed, every page leads to the password page."""
    staff = await current_staff(request, settings, now)
    if staff is None:
        raise SignInRequired
    if staff.must_change_password and request.url.path not in ("/password", "/sign-out"):
        raise SignInRequired("password")
    request.scope["user"] = staff
    return staff


def require_staff_role(staff: StaffMember, *roles: Role) -> None:
    """Refuse a page to other roles (admin always passes), as the API's guard does."""
    if staff.role is not Role.admin and staff.role not in roles:
        raise PermissionDeniedException("This page is not for your role.")


def csrf_token(request: Request[Any, Any, Any]) -> str:
    token = request.cookies.get(CSRF_COOKIE)
    if not token or len(token) != 43:
        token = request.scope.setdefault("clinic_new_csrf", secrets.token_urlsafe(32))  # type: ignore[typeddict-item]
    return str(token)


async def check_csrf(request: Request[Any, Any, Any]) -> None:
    """Before every unsafe page request: the form's token must match the cookie's."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = str((await request.form()).get(CSRF_FIELD, ""))
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        log.warning("csrf_refused", path=request.url.path)
        raise CsrfRefused(
            "The form had expired or did not come from this site. Go back, reload it and try again."
        )


async def form_of(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    """The posted form, every value of each field (the CSRF field left out)."""
    form = await request.form()
    return {k: [str(v) for v in form.getall(k)] for k in form if k != CSRF_FIELD}


def _cookie(request: Request[Any, Any, Any], key: str, value: str, **kw: Any) -> Cookie:
    return Cookie(key=key, value=value, path="/", httponly=True, secure=request.url.scheme == "https", **kw)


def other_service_url(request: Request[Any, Any, Any], service: str) -> str:
    """The public base URL of a service's pages (configured, else this host at its port)."""
    settings = _settings(request)
    configured = settings.intake_public_url if service == "intake" else settings.referral_public_url
    if configured:
        return configured.rstrip("/")
    port = settings.intake_port if service == "intake" else settings.referral_port
    return f"{request.url.scheme}://{request.url.hostname}:{port}"


def home_url(request: Request[Any, Any, Any], staff: StaffMember | None) -> str:
    """Each person's own first page: the front desk's home on the intake service, the referral
    service's `/` for the other roles (it sends each to their own first page)."""
    if staff is None:
        return "/"
    service = "intake" if staff.role is Role.front_desk else "referral"
    return other_service_url(request, service) + "/"


def render(
    request: Request[Any, Any, Any], template: str, status_code: int = 200, **context: Any
) -> Template:
    """A page: the template with the signed-in person, the CSRF token and the navigation."""
    staff = request.scope.get("user")
    context.setdefault("staff", staff if isinstance(staff, StaffMember) else None)
    context["form_token_field"] = CSRF_FIELD
    context["form_token"] = csrf_token(request)
    context["intake_url"] = other_service_url(request, "intake")
    context["referral_url"] = other_service_url(request, "referral")
    context["request_path"] = request.url.path
    context["home_url"] = home_url(request, context["staff"])
    response = Template(template_name=template, context=context, status_code=status_code)
    new = request.scope.get("clinic_new_csrf")  # type: ignore[typeddict-item]
    if new:
        response.cookies.append(_cookie(request, CSRF_COOKIE, str(new), samesite="strict"))
    return response


def redirect(path: str) -> Redirect:
    """After a form post: 303 See Other, so a reload does not post again."""
    return Redirect(path=path, status_code=303)


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never another host) is followed after sign-in."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    parts = urlsplit(target)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _sign_in_required(request: Request[Any, Any, Any], exc: SignInRequired) -> Response[Any]:
    if exc.args and exc.args[0] == "password":
        target = "/password"
    else:
        target = "/sign-in?next=" + quote(request.url.path, safe="/")
    if request.headers.get("hx-request"):
        return Response(b"", status_code=200, headers={"HX-Redirect": target})
    return Redirect(path=target, status_code=303)


def _page_error(request: Request[Any, Any, Any], exc: HTTPException | ClinicError) -> Response[Any]:
    """An error as a page (a rule's refusal with the status the API would give it)."""
    status = status_of(exc) if isinstance(exc, ClinicError) else exc.status_code
    titles = {403: "Not allowed", 404: "Not found", 413: "Too large"}
    return render(
        request,
        "error.html",
        status_code=status,
        title=titles.get(status, "Something went wrong"),
        message=str(exc.detail) if status < 500 else "An unexpected error occurred; it has been logged.",
    )


def page_router(path: str, route_handlers: Sequence[ControllerRouterHandler]) -> Router:
    """Pages as a service serves them: session-authenticated (not by API key), CSRF-checked,
    with the security headers, and out of the OpenAPI document."""
    return Router(
        path=path,
        route_handlers=route_handlers,
        dependencies={"staff": Provide(provide_staff)},
        before_request=check_csrf,
        exception_handlers={
            SignInRequired: _sign_in_required,
            HTTPException: _page_error,
            ClinicError: _page_error,
        },
        opt={"exclude_from_auth": True},
        include_in_schema=False,
        security=[{}],
    )


# -- the sign-in pages (both services) ------------------------------------------------------------


@get("/sign-in")
async def sign_in_page(request: Request[Any, Any, State]) -> Template:
    return render(request, "sign_in.html", next=_safe_next(request.query_params.get("next")), email="")


@post("/sign-in", status_code=200, media_type=MediaType.HTML)
async def sign_in_submit(
    request: Request[Any, Any, State], settings: ClinicSettings, now: Now
) -> Response[Any]:
    form = await request.form()
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "/")))
    try:
        async with _maker(request)() as session:
            try:
                token = await staff_sessions.sign_in(
                    session, email, password, _attempt(request, now), settings
                )
            finally:
                await session.commit()
    except staff_sessions.SignInRefused as exc:
        return render(request, "sign_in.html", status_code=401, error=exc.message, email=email, next=target)
    response = redirect(target)
    response.set_cookie(_cookie(request, SESSION_COOKIE, token, samesite="lax"))
    return response


@post("/sign-out", status_code=200)
async def sign_out(request: Request[Any, Any, State], staff: Staff, now: Now) -> Response[Any]:
    async with _maker(request)() as session:
        await staff_sessions.sign_out(session, staff, _attempt(request, now))
        await session.commit()
    response = redirect("/sign-in?signed_out=1")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@get("/password")
async def password_page(request: Request[Any, Any, State], staff: Staff) -> Template:
    return render(request, "password.html")


@post("/password", status_code=200, media_type=MediaType.HTML)
async def password_submit(request: Request[Any, Any, State], staff: Staff, now: Now) -> Response[Any]:
    form = await request.form()
    new, again = str(form.get("new_password", "")), str(form.get("new_password_again", ""))
    try:
        if new != again:
            raise accounts.AccountError("The two new passwords are not the same.")
        async with _maker(request)() as session:
            await staff_sessions.change_password(
                session, staff, str(form.get("current_password", "")), new, _attempt(request, now)
            )
            await session.commit()
    except accounts.AccountError as exc:
        return render(request, "password.html", status_code=422, error=str(exc))
    return redirect("/")


def common_page_handlers() -> list[ControllerRouterHandler]:
    """Sign-in, sign-out, password change and the shared static files, for every service."""
    return [
        page_router("/", [sign_in_page, sign_in_submit, sign_out, password_page, password_submit]),
        create_static_files_router(
            path="/static",
            directories=[HERE / "static"],
            opt={"exclude_from_auth": True},
            include_in_schema=False,
            cache_control=CacheControlHeader(no_cache=True),
        ),
    ]
