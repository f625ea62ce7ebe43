"""The clock, behind a small interface so tests can move time (follow-ups, due dates, triage
durations) without sleeping. Apps read it from `state["clinic_clock"]`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable


@runtime_checkable  # handlers receive it by dependency injection, which checks its type
class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that stands still until told to move."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


def now_of(state: Any) -> datetime:
    """The app's clock (`state["clinic_clock"]`: the system's, or a test's fake)."""
    clock: Clock = state["clinic_clock"]
    return clock.now()


async def first_of(seconds: float, *events: asyncio.Event) -> None:
    """Wait until any of `events` is set (a stop, a wake-up), or `seconds` of real time have
    passed: how every background loop sleeps between rounds without missing its stop."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
