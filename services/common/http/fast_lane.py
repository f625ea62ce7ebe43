"""A route's common case answered ahead of Litestar's routing: the intake POST (issue 17).

Measured in process on the 2-core machine, an intake POST cost 1.0 ms of CPU, of which about a
quarter was the middleware layers' plumbing and another quarter the route's guard, signature model,
dependency injection and response machinery: more than the bare baseline's whole request.

A fast lane takes a request only when nothing about it needs that machinery: the route's exact
method and path with no query string, a JSON body within the input limits, a bearer key the key
cache knows as valid for a role the route admits, a client not being throttled, and a body the
route's own rules accept (`FastLane.prepare`). Everything else, a missing, unknown or refused
key, a throttled client, a body over the limit or one the rules refuse, an unusual content type,
goes on to the app unchanged, with the body read so far replayed, and is answered as it always is.
So every refusal and every error message keeps its one home.

What a lane serves passes the layers every request passes (`Layers`: request id and log line,
access audit, metrics), then the app's `before_send` (security headers) outside them; anything
its work raises is answered by the app's exception handlers, as a route's would be.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeAlias

from litestar import Litestar, Request, Response
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from services.common.access.auth import KeyCache, Principal, Role, bearer_token
from services.common.access.throttle import throttled
from services.common.http.input_limits import body_problems, read_body

#: The layers every request passes, built around an ASGI app (`build_app` gives them).
Layers: TypeAlias = Callable[[ASGIApp], ASGIApp]
#: The lane's own work for one admitted request, answered as a response.
Answer: TypeAlias = Callable[[], Awaitable[Response[Any]]]
#: A service's lane, made for its app: (the app, the app's usual handling, the shared layers).
LaneFactory: TypeAlias = Callable[[Litestar, ASGIApp, Layers], ASGIApp]

_ANSWER = "clinic_fast_lane_answer"
_JSON = "application/json"


def route_handler(app: Litestar, method: str, path: str) -> HTTPRouteHandler:
    """The app's handler of `method path` (a lane sets it in the scope, as routing would)."""
    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path == path:
            for handler in route.route_handlers:
                if isinstance(handler, HTTPRouteHandler) and method in handler.http_methods:
                    return handler
    raise LookupError(f"no route handles {method} {path}")


class FastLane:
    """Answers `method path` when the request is the common case; passes anything else on."""

    method: ClassVar[str]
    path: ClassVar[str]
    #: The roles the route admits (as its guard does).
    roles: ClassVar[frozenset[Role]]

    def __init__(self, app: Litestar, usual: ASGIApp, layers: Layers) -> None:
        self.app = app
        self.usual = usual
        self.handler = route_handler(app, self.method, self.path)
        self.served = layers(self._answer)

    async def prepare(self, scope: Scope, caller: Principal, body: bytes) -> Answer | None:
        """The lane's work for this request, once its body is known to be acceptable; None to
        leave the request to the app (which then answers it as usual)."""
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != ScopeType.HTTP
            or scope.get("method") != self.method
            or scope["path"] != self.path
            or scope.get("query_string")
            or (admitted := self._caller(scope)) is None
        ):
            await self.usual(scope, receive, send)
            return
        caller, token = admitted
        state = self.app.state
        read = await read_body(receive, state["clinic_settings"].max_body_bytes)
        replay = read.replay(receive)
        answer = None
        if read.complete and not body_problems(read.body):
            answer = await self.prepare(scope, caller, read.body)
        if answer is None:
            await self.usual(scope, replay, send)
            return
        # What routing and the auth middleware would have set, for the layers and the handlers.
        scope["user"], scope["auth"] = caller, token
        scope["route_handler"], scope["path_params"], scope["path_template"] = self.handler, {}, self.path
        scope[_ANSWER] = answer  # type: ignore[literal-required]
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.served(scope, replay, watched)
        except Exception as exc:  # raised by a layer: answered as the app answers one
            if started:
                raise
            await self._answer_problem(scope, replay, send, exc)

    def _caller(self, scope: Scope) -> tuple[Principal, str] | None:
        """The key's holder and the key, when the request is one the lane may take (else None).
        Only a key the cache holds as valid is taken: the lane never looks a key up itself."""
        headers = scope["headers"]
        names = [name for name, _ in headers]
        if b"cookie" in names or names.count(b"authorization") != 1:
            return None
        media_type = _header(scope, b"content-type").partition(";")[0].strip().lower()
        token = bearer_token(_header(scope, b"authorization"))
        state = self.app.state
        if media_type != _JSON or token is None or throttled(state["clinic_auth_failures"], scope):
            return None
        cache: KeyCache = state["clinic_key_cache"]
        caller = cache.known(token)
        return (caller, token) if caller is not None and caller.role in self.roles else None

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer: Answer = scope.pop(_ANSWER)  # type: ignore[misc]
        try:
            response = await answer()
        except Exception as exc:  # answered as the route's would be, inside the layers
            await self._answer_problem(scope, receive, send, exc)
            return
        request: Request[Any, Any, Any] = Request(scope, receive, send)
        await response.to_asgi_response(app=None, request=request)(scope, receive, send)

    async def _answer_problem(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        """The app's exception handler's answer to `exc` (its handlers map exception types)."""
        handlers = self.app.exception_handlers
        handler = next((handlers[kind] for kind in type(exc).__mro__ if kind in handlers), None)
        if handler is None:
            raise exc
        request: Request[Any, Any, Any] = Request(scope, receive, send)
        response: Response[Any] = handler(request, exc)
        await response.to_asgi_response(app=None, request=request)(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return ""
