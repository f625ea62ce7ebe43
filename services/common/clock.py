"""The clock, behind a small interface so tests can move time (follow-ups, due dates, triage
durations) without sleeping. Apps read it from `state["clinic_clock"]`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import structlog

log = structlog.get_logger(__name__)


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


async def until_stopped(
    stop: asyncio.Event,
    round_: Callable[[], Awaitable[object]],
    every: float,
    *,
    failed: str,
    wake: asyncio.Event | None = None,
) -> None:
    """The one background loop: run `round_`, then wait `every` seconds (or until `wake`), until
    `stop` is set. A round that raises is logged as the event `failed` (its error type only: an
    error's text may quote a row) and tried again next time: a database blip never ends a loop."""
    while not stop.is_set():
        if wake is not None:
            wake.clear()  # a wake-up arriving during the round sets it again
        try:
            await round_()
        except Exception as exc:
            log.warning(failed, error_type=type(exc).__name__)
        await first_of(every, *([wake, stop] if wake is not None else [stop]))


def clinic_today(now: datetime, time_zone: str) -> date:
    """The clinic's date at `now`: the day triage, intake validation and follow-ups count from
    (`time_zone` is the IANA name of the setting `clinic_time_zone`)."""
    return now.astimezone(ZoneInfo(time_zone)).date()
