"""The closed-loop report: how referrals created in a period fared, computed in PostgreSQL.

The population is the referrals created in `[since, until)` (optionally at one destination, the
referral's current one: a clinician review resolved to pain management counts there).

- Counts by destination, priority and status: the referrals' statuses now (at `as_of`).
- Time to acceptance / to scheduling: `accepted_at - created_at` and `scheduled_at - created_at`
  over the referrals that reached that step (whatever happened after); median and 90th
  percentile by `percentile_cont` (linear interpolation between the two nearest values).
  A held referral's clock starts at its creation, so clinician review time is included.
- Open overdue: referrals still open (needs_review, requested, accepted, scheduled) whose
  `due_by` has passed at `as_of`.
- Closed share: see `CLOSED_DEFINITION`, the measure referral management is judged by (did every
  referral reach an outcome the referrer can see).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts.vocabulary import OPEN_STATUSES
from services.referral.db.models import Referral
from services.referral.referrals.lifecycle import DESTINATIONS, PRIORITIES, STATUSES
from services.referral.reports.schemas import ClosedShare, OpenOverdue, ReferralReport, ReportSeries, Timing

CLOSED_DEFINITION = (
    "closed = status completed, no_show, or declined with a (non-blank) reason. The share is "
    "closed / of, where `of` counts the referrals created in the period that were not superseded "
    "by another referral: one cancelled by an intake amendment or declined with a redirect hands "
    "its loop to its successor, which is counted in its place. Cancelled and still-open referrals "
    "count in `of` but not as closed."
)


def _closed() -> ColumnElement[bool]:
    return or_(
        Referral.status.in_(("completed", "no_show")),
        and_(Referral.status == "declined", func.btrim(func.coalesce(Referral.close_reason, "")) != ""),
    )


def _zeroed(keys: tuple[str, ...], counts: Counter[str]) -> dict[str, int]:
    return {key: counts.get(key, 0) for key in keys}


def _seconds(value: dt.timedelta | None) -> float | None:
    return value.total_seconds() if value is not None else None


async def referral_report(
    session: AsyncSession,
    *,
    since: dt.datetime,
    until: dt.datetime,
    as_of: dt.datetime,
    destination: str | None = None,
) -> ReferralReport:
    period = [Referral.created_at >= since, Referral.created_at < until]
    if destination is not None:
        period.append(Referral.destination == destination)
    overdue = and_(Referral.status.in_(OPEN_STATUSES), Referral.due_by < as_of)

    groups = (
        await session.execute(
            select(
                Referral.destination,
                Referral.priority,
                Referral.status,
                func.count().label("n"),
                func.count().filter(overdue).label("overdue"),
            )
            .where(*period)
            .group_by(Referral.destination, Referral.priority, Referral.status)
        )
    ).all()

    to_accept = Referral.accepted_at - Referral.created_at
    to_schedule = Referral.scheduled_at - Referral.created_at
    live = Referral.superseded_by.is_(None)
    figures: Any = (
        await session.execute(
            select(
                func.count(Referral.accepted_at).label("accepted"),
                func.percentile_cont(0.5).within_group(to_accept).label("accept_p50"),
                func.percentile_cont(0.9).within_group(to_accept).label("accept_p90"),
                func.count(Referral.scheduled_at).label("scheduled"),
                func.percentile_cont(0.5).within_group(to_schedule).label("schedule_p50"),
                func.percentile_cont(0.9).within_group(to_schedule).label("schedule_p90"),
                func.count().filter(live).label("live"),
                func.count().filter(and_(live, _closed())).label("closed"),
            ).where(*period)
        )
    ).one()

    by_destination: Counter[str] = Counter()
    by_priority: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    overdue_destination: Counter[str] = Counter()
    overdue_priority: Counter[str] = Counter()
    for row in groups:
        by_destination[row.destination] += row.n
        by_priority[row.priority] += row.n
        by_status[row.status] += row.n
        overdue_destination[row.destination] += row.overdue
        overdue_priority[row.priority] += row.overdue

    return ReferralReport(
        since=since,
        until=until,
        as_of=as_of,
        destination=destination,
        total=sum(by_status.values()),
        by_destination=_zeroed(DESTINATIONS, by_destination),
        by_priority=_zeroed(PRIORITIES, by_priority),
        by_status=_zeroed(STATUSES, by_status),
        time_to_acceptance=Timing(
            count=figures.accepted,
            median_seconds=_seconds(figures.accept_p50),
            p90_seconds=_seconds(figures.accept_p90),
        ),
        time_to_scheduling=Timing(
            count=figures.scheduled,
            median_seconds=_seconds(figures.schedule_p50),
            p90_seconds=_seconds(figures.schedule_p90),
        ),
        open_overdue=OpenOverdue(
            total=sum(overdue_destination.values()),
            by_destination=_zeroed(DESTINATIONS, overdue_destination),
            by_priority=_zeroed(PRIORITIES, overdue_priority),
        ),
        closed=ClosedShare(
            closed=figures.closed,
            of=figures.live,
            share=figures.closed / figures.live if figures.live else None,
            definition=CLOSED_DEFINITION,
        ),
    )


#: The buckets the time-to-step distributions are counted in: (label, upper bound, exclusive).
DURATION_BUCKETS: tuple[tuple[str, dt.timedelta | None], ...] = (
    ("under 1 h", dt.timedelta(hours=1)),
    ("1-4 h", dt.timedelta(hours=4)),
    ("4-24 h", dt.timedelta(days=1)),
    ("1-3 days", dt.timedelta(days=3)),
    ("3-7 days", dt.timedelta(days=7)),
    ("7 days or more", None),
)


def _bucket(value: Any) -> str:
    """The label of the bucket a duration (a timedelta from PostgreSQL's interval) falls in."""
    return next(label for label, bound in DURATION_BUCKETS if bound is None or value < bound)


async def report_series(
    session: AsyncSession, *, since: dt.datetime, until: dt.datetime, destination: str | None = None
) -> ReportSeries:
    """The same population as `referral_report` (created in `[since, until)`), day by day."""
    period = [Referral.created_at >= since, Referral.created_at < until]
    if destination is not None:
        period.append(Referral.destination == destination)
    day = func.date(func.timezone("UTC", Referral.created_at))
    rows = (
        await session.execute(
            select(day.label("day"), Referral.destination, Referral.priority, func.count().label("n"))
            .where(*period)
            .group_by(day, Referral.destination, Referral.priority)
        )
    ).all()
    first, last = (
        since.astimezone(dt.UTC).date(),
        (until - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date(),
    )
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    index = {d: i for i, d in enumerate(days)}
    by_destination = {d: [0] * len(days) for d in DESTINATIONS}
    by_priority = {p: [0] * len(days) for p in PRIORITIES}
    for row in rows:
        by_destination[row.destination][index[row.day]] += row.n
        by_priority[row.priority][index[row.day]] += row.n
    steps = (
        await session.execute(
            select(
                Referral.accepted_at - Referral.created_at, Referral.scheduled_at - Referral.created_at
            ).where(*period, or_(Referral.accepted_at.is_not(None), Referral.scheduled_at.is_not(None)))
        )
    ).all()
    to_acceptance = {label: 0 for label, _ in DURATION_BUCKETS}
    to_scheduling = dict(to_acceptance)
    for accepted, scheduled in steps:
        if accepted is not None:
            to_acceptance[_bucket(accepted)] += 1
        if scheduled is not None:
            to_scheduling[_bucket(scheduled)] += 1
    return ReportSeries(
        days=days,
        by_destination=by_destination,
        by_priority=by_priority,
        to_acceptance=to_acceptance,
        to_scheduling=to_scheduling,
    )
