"""Security headers on every response of both services: the API, the staff pages, their static
files and the API docs (one hook for all).

Responses carry patient data, so nothing may be cached (`Cache-Control: no-store`, unless a
handler set its own), sniffed into another type (`nosniff`), framed, or sent on as a referrer. The
Content-Security-Policy allows only the service's own assets: no page of ours loads a script,
style or font from elsewhere. The API docs' page (Swagger UI, served from `/schema/assets`) starts
itself with an inline script, so that page alone also allows inline script and style.
"""

from __future__ import annotations

import re

from litestar.types import Message, Scope

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

#: The API docs' page: its own assets plus the inline script that starts it.
DOCS_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace(
    "script-src 'self'", "script-src 'self' 'unsafe-inline'"
).replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
_DOCS_PAGE = re.compile(r"^/schema(/(swagger|redoc|elements|rapidoc))?/?$")

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
)


async def add_security_headers(message: Message, scope: Scope) -> None:
    """A `before_send` hook: every response gets `SECURITY_HEADERS`, error responses too (a
    refusal raised by the auth middleware is answered outside any middleware)."""
    if message["type"] == "http.response.start":
        headers = list(message.get("headers") or [])
        present = {bytes(name).lower() for name, _ in headers}
        headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
        if _DOCS_PAGE.match(scope.get("path", "")):
            headers = [
                (n, DOCS_CONTENT_SECURITY_POLICY.encode()) if n == b"content-security-policy" else (n, v)
                for n, v in headers
            ]
        message["headers"] = headers
