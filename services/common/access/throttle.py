"""Refused keys are counted and throttled: per client address and per key prefix, more than
`limit` refusals (401) within `window` seconds and the next request is a 429 with `Retry-After`
until the window has moved on. A valid key's requests are never counted."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from litestar.exceptions import NotAuthorizedException, TooManyRequestsException
from litestar.types import ASGIApp, Receive, Scope, Send
from prometheus_client import Counter

from services.common.access.audit_middleware import KeyedHttpMiddleware

AUTH_FAILURES = Counter(
    "clinic_auth_failures", "Requests refused: 401 (no or bad key) and 403 (role).", ["status", "reason"]
)
THROTTLED = Counter("clinic_auth_throttled", "Requests answered 429 after repeated refused keys.", ["by"])
#: The part of a key that names a throttle bucket (a guesser varies the rest).
PREFIX_CHARS = 12


@dataclass
class FailureWindow:
    limit: int
    window: float
    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str) -> deque[float]:
        now = self.clock()
        times = self._seen.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            self._seen.pop(key, None)
        if len(self._seen) > 100_000:  # bounded: an attacker's random addresses cost memory only
            self._seen.clear()
        return times

    def retry_after(self, key: str) -> int | None:
        times = self._recent(key)
        if len(times) < self.limit:
            return None
        return max(1, math.ceil(times[0] + self.window - self.clock()))

    def fail(self, key: str) -> None:
        self._recent(key)
        self._seen.setdefault(key, deque()).append(self.clock())


def refusal_buckets(scope: Scope) -> dict[str, str]:
    """The buckets a request's refusals count in: its client address and its key's prefix."""
    client = scope.get("client")
    buckets = {"address": f"addr:{client[0] if client else '-'}"}
    header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
    token = header.partition(" ")[2].strip()
    if token:
        buckets["key_prefix"] = f"key:{token[:PREFIX_CHARS]}"
    return buckets


def throttled(window: FailureWindow, scope: Scope) -> bool:
    """Whether the request would be answered 429 now (the middleware's check, for a fast lane)."""
    return any(window.retry_after(bucket) is not None for bucket in refusal_buckets(scope).values())


class AuthThrottleMiddleware(KeyedHttpMiddleware):
    """Before the key is checked: 429 for a client address or key prefix with too many recent
    refusals; after: a refusal counts against both."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        window: FailureWindow = scope["app"].state["clinic_auth_failures"]
        buckets = refusal_buckets(scope)
        for by, bucket in buckets.items():
            if (wait := window.retry_after(bucket)) is not None:
                THROTTLED.labels(by=by).inc()
                raise TooManyRequestsException(
                    "Too many requests with a refused key: try again later.",
                    headers={"Retry-After": str(wait)},
                )
        try:
            await next_app(scope, receive, send)
        except NotAuthorizedException:
            for bucket in buckets.values():
                window.fail(bucket)
            raise
