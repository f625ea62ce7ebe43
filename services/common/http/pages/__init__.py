"""What every service's staff pages share: the layout, stylesheet and navigation (templates/,
static/), staff sign-in with server-side sessions, CSRF protection and the security headers.

A service builds its own pages with `page_router(...)` (which adds the session, the CSRF check and
the headers to each of them) and renders with `render(...)`; its templates extend `layout.html`.
"""

from services.common.http.pages.web import (
    SignInRequired,
    Staff,
    common_page_handlers,
    form_of,
    home_url,
    page_router,
    redirect,
    render,
    require_staff_role,
    template_config,
)

__all__ = [
    "SignInRequired",
    "Staff",
    "common_page_handlers",
    "form_of",
    "home_url",
    "page_router",
    "redirect",
    "render",
    "require_staff_role",
    "template_config",
]
