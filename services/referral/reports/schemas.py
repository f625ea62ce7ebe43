"""What the closed-loop report returns."""

from __future__ import annotations

import datetime as dt

import msgspec


class Timing(msgspec.Struct, frozen=True, kw_only=True):
    """Time from a referral's creation to a step, over the referrals that reached it."""

    count: int
    median_seconds: float | None
    p90_seconds: float | None


class OpenOverdue(msgspec.Struct, frozen=True, kw_only=True):
    """Referrals still open whose `due_by` has passed at `as_of`."""

    total: int
    by_destination: dict[str, int]
    by_priority: dict[str, int]


class ClosedShare(msgspec.Struct, frozen=True, kw_only=True):
    closed: int
    #: The referrals the share is taken over (see `definition`).
    of: int
    share: float | None
    definition: str


class ReferralReport(msgspec.Struct, frozen=True, kw_only=True):
    since: dt.datetime
    until: dt.datetime
    #: The moment the report was computed: what "open" and "overdue" are measured against.
    as_of: dt.datetime
    destination: str | None
    total: int
    by_destination: dict[str, int]
    by_priority: dict[str, int]
    by_status: dict[str, int]
    time_to_acceptance: Timing
    time_to_scheduling: Timing
    open_overdue: OpenOverdue
    closed: ClosedShare


class ReportSeries(msgspec.Struct, frozen=True, kw_only=True):
    """The report's figures over time, for its charts and CSV: referrals created per day (UTC)
    by destination and by priority, and how long the referrals took to be accepted and to be
    scheduled, counted in `DURATION_BUCKETS`."""

    days: list[dt.date]
    by_destination: dict[str, list[int]]
    by_priority: dict[str, list[int]]
    to_acceptance: dict[str, int]
    to_scheduling: dict[str, int]
