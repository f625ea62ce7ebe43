"""Posting one webhook: the HTTP edge (httpx through the SSRF guard) and what an attempt yielded."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import httpx

from services.referral.webhooks.ssrf import TargetError

EXCERPT_CHARS = 500
_READ_BYTES = 4 * EXCERPT_CHARS


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    status_code: int | None
    latency_ms: int
    error: str | None = None
    response_excerpt: str | None = None
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


class HttpSender(Protocol):
    """The one external edge: post a body, report what came back (never raises)."""

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> AttemptOutcome: ...


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from `Retry-After` (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class HttpxSender:
    """Posts through the SSRF-guarded transport itself, with a hard overall timeout.

    A webhook needs none of httpx's client layer: no cookies (a receiver's `Set-Cookie` must not
    ride on later deliveries), no redirects (they are not followed), no auth, no base URL.
    Skipping it and the pool checkout per success (`Ledger`) together cut the sender's CPU per
    delivery by about a quarter (issue 17, `docs/benchmarks.md`, session 11)."""

    def __init__(self, transport: httpx.AsyncBaseTransport, timeout_seconds: float) -> None:
        self.transport = transport
        self.timeout_seconds = timeout_seconds
        self._extensions = {"timeout": httpx.Timeout(timeout_seconds).as_dict()}

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> AttemptOutcome:
        started = time.perf_counter()

        def elapsed() -> int:
            return round((time.perf_counter() - started) * 1000)

        try:
            async with asyncio.timeout(self.timeout_seconds):
                request = httpx.Request(
                    "POST", url, content=body, headers=headers, extensions=self._extensions
                )
                response = await self.transport.handle_async_request(request)
                response.request = request
                try:
                    excerpt = await _read_excerpt(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            return AttemptOutcome(None, elapsed(), error=f"no answer within {self.timeout_seconds:g} s")
        except TargetError as exc:
            return AttemptOutcome(None, elapsed(), error=f"refused: {exc}"[:EXCERPT_CHARS])
        except httpx.TimeoutException:
            return AttemptOutcome(None, elapsed(), error=f"no answer within {self.timeout_seconds:g} s")
        except httpx.HTTPError as exc:
            return AttemptOutcome(None, elapsed(), error=f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS])
        error = None
        if not 200 <= response.status_code < 300:
            error = f"HTTP {response.status_code}"
            if response.is_redirect:
                error += " (redirects are not followed)"
        return AttemptOutcome(
            response.status_code,
            elapsed(),
            error=error,
            response_excerpt=excerpt,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )


async def _read_excerpt(response: httpx.Response) -> str | None:
    """The first few hundred characters of the answer; the rest is never read."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _READ_BYTES:
            break
    text_ = b"".join(chunks)[:_READ_BYTES].decode("utf-8", errors="replace").strip()
    return text_[:EXCERPT_CHARS] or None
