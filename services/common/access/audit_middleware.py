"""The access audit's middleware: reads, refusals and failed writes are recorded before the
response leaves (a committed write has already recorded itself through `audit`'s session hooks).

The response's first bytes are held until the row is committed, so a response that fails later is
still on record, and a record that cannot be written means no patient data is sent. Patients are
also gathered from `patient_id` fields and `Patient/<id>` references in the response.
"""

from __future__ import annotations

import re
import uuid
from contextlib import suppress
from typing import Any

import msgspec
import structlog
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.handlers import HTTPRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.access.audit import AccessContext, Actor, as_uuid, current_context, write_row
from services.common.db.engine import release_request_session

#: Health, schema and metrics: no patient data, no key (the auth middleware skips them too).
PUBLIC = re.compile(r"^/(health/|schema|metrics)")
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([0-9a-fA-F-]{36})$")
#: Who a refusal of a request without a valid key is recorded as.
ANONYMOUS = Actor(id=None, name="anonymous", role=None, kind="anonymous")


def _outcome(status: int) -> str:
    if status in (401, 403):
        return "denied"
    if status >= 500:
        return "failed"
    if status >= 400:
        return "rejected"
    return "ok"


def _patients_in(value: Any, found: set[uuid.UUID], depth: int = 0) -> None:
    if depth > 12:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "patient_id":
                if (as_id := as_uuid(item)) is not None:
                    found.add(as_id)
            else:
                _patients_in(item, found, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _patients_in(item, found, depth + 1)
    elif (
        isinstance(value, str)
        and "Patient/" in value
        and (match := _PATIENT_REF.search(value))
        and (as_id := as_uuid(match.group(1))) is not None
    ):
        found.add(as_id)


def _context_for(scope: Scope, service: str) -> AccessContext:
    handler = scope.get("route_handler")
    operation = getattr(handler, "operation_id", None)
    # Its own tags and those of its controller and router (each route has one: its resource type).
    tags = handler.resolve_tags() if isinstance(handler, HTTPRouteHandler) else []
    params = scope.get("path_params") or {}
    # The route's full template (routing sets it): a controller's handler knows only its own part.
    template = scope.get("path_template")
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return AccessContext(
        service=service,
        action=operation if isinstance(operation, str) else f"{scope.get('method')} {scope.get('path')}",
        method=str(scope.get("method")),
        path=template if isinstance(template, str) else scope.get("path"),
        resource_type=tags[0] if tags else None,
        resource_id="/".join(str(v) for v in params.values()) or None,
        request_id=request_id if isinstance(request_id, str) else None,
        scope=scope,
    )


def _is_public(scope: Scope) -> bool:
    return PUBLIC.match(scope.get("path", "")) is not None


class KeyedHttpMiddleware(ASGIMiddleware):
    """A middleware of the HTTP requests a key guards: the public paths pass it by."""

    scopes = (ScopeType.HTTP,)
    should_bypass_for_scope = staticmethod(_is_public)


class AuditMiddleware(KeyedHttpMiddleware):
    """Sets the audit context for the request; records reads, refusals and failed writes before
    the response leaves (a committed write has already recorded itself)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        state = scope["app"].state
        ctx = _context_for(scope, state["clinic_service"])
        token = current_context.set(ctx)
        start: HTTPResponseStartEvent | None = None
        chunks: list[bytes] = []

        async def audited_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message  # type: ignore[assignment]
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            await self._record(state["clinic_engine"], ctx, start["status"], body)
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})

        try:
            await next_app(scope, receive, audited_send)
        except HTTPException as exc:
            # The auth middleware's refusals are raised past us and answered further out.
            if start is None:
                await self._record(state["clinic_engine"], ctx, exc.status_code, b"")
            raise
        finally:
            current_context.reset(token)

    @staticmethod
    async def _record(engine: AsyncEngine, ctx: AccessContext, status: int, body: bytes) -> None:
        if ctx.recorded and status < 400:
            return
        actor = ctx.actor()
        if actor is None:
            if status not in (401, 403):
                return
            actor = ANONYMOUS
        if status < 400 and body[:1] in (b"{", b"["):
            with suppress(msgspec.DecodeError):
                _patients_in(msgspec.json.decode(body), ctx.patients)
        ctx.changes.clear()  # a refused or failed write changed nothing
        if status >= 400 and ctx.recorded:
            return
        if ctx.scope is not None:  # the request's connection back first: this row needs one
            await release_request_session(ctx.scope, ctx.scope["app"].state["clinic_session_scope_key"])
        await write_row(engine, ctx.row(actor, _outcome(status), status))
