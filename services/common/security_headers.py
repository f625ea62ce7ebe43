"""Security headers on every response of both services.

Responses carry patient data, so nothing may be cached (`Cache-Control: no-store`), sniffed
into another type (`nosniff`), framed, or sent on as a referrer. The Content-Security-Policy allows
only the service's own assets: no page of ours loads a script, style or font from elsewhere.
"""

from __future__ import annotations

from litestar.types import Message, Scope

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
)


async def add_security_headers(message: Message, _scope: Scope) -> None:
    """A `before_send` hook: every response gets `SECURITY_HEADERS`, error responses too (a
    refusal raised by the auth middleware is answered outside any middleware)."""
    if message["type"] == "http.response.start":
        headers = list(message.get("headers") or [])
        present = {bytes(name).lower() for name, _ in headers}
        headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
        message["headers"] = headers
