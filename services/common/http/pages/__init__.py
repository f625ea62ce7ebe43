"""What every service's staff pages share: the layout, stylesheet and navigation (templates/,
static/), staff sign-in with server-side sessions, CSRF protection and the security headers.

A service builds its own pages with `web.page_router(...)` (which adds the session, the CSRF check and
the headers to each of them) and renders with `web.render(...)`; its templates extend `layout.html`.
"""
