"""The clinician's pages: the review queue of cases held for a clinician, and the closed-loop
report (with its charts, and as CSV)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.response import Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts import labels
from services.common.http.deps import Now
from services.common.http.pages.web import Staff, render, require_staff_role
from services.common.http.web import DbSession
from services.referral.db.models import Referral
from services.referral.pages.charts import stacked_bars
from services.referral.pages.shared import CLINICIANS, page_context
from services.referral.reports.controllers import DEFAULT_PERIOD
from services.referral.reports.services import referral_report, report_series
from services.referral.triage import Destination


@get("/review")
async def review_queue(
    request: Request[Any, Any, State], staff: Staff, db_session: DbSession, now: Now
) -> Template:
    """Cases held for a clinician, oldest first, with why each was held."""
    require_staff_role(staff, *CLINICIANS)
    rows = await db_session.execute(
        select(Referral).where(Referral.status == "needs_review").order_by(Referral.created_at, Referral.id)
    )
    return render(
        request,
        "referral/review.html",
        **page_context(items=list(rows.scalars()), now=now, title="Review queue"),
    )


async def _report_figures(
    request: Request[Any, Any, Any], session: AsyncSession, as_of: dt.datetime
) -> dict[str, Any]:
    """The closed-loop report and its series for `?days=` (default 30) and `?destination=`, as
    `GET /v1/reports/referrals` computes them."""
    q = request.query_params
    try:
        days = min(max(int(q.get("days") or DEFAULT_PERIOD.days), 1), 366)
    except ValueError:
        days = DEFAULT_PERIOD.days
    destination = d if (d := q.get("destination") or "") in DESTINATION_VALUES else None
    since = as_of - dt.timedelta(days=days)
    report = await referral_report(session, since=since, until=as_of, as_of=as_of, destination=destination)
    series = await report_series(session, since=since, until=as_of, destination=destination)
    return {"report": report, "series": series, "days": days, "destination": destination or ""}


DESTINATION_VALUES = [d.value for d in Destination]


def _named(counts: dict[str, Any], words: Any) -> dict[str, Any]:
    return {words.get(k, k): v for k, v in counts.items()}


@get("/report")
async def report_page(
    request: Request[Any, Any, State], staff: Staff, db_session: DbSession, now: Now
) -> Template:
    """The closed-loop report with its charts (clinicians and admins, as the API)."""
    require_staff_role(staff, *CLINICIANS)
    figures = await _report_figures(request, db_session, now)
    report, series = figures["report"], figures["series"]
    day_labels = [d.strftime("%m-%d") for d in series.days]
    charts = {
        "by_destination": stacked_bars(
            "chart-destination",
            "Referrals created per day, by destination",
            day_labels,
            _named(series.by_destination, labels.DESTINATION_LABELS),
        ),
        "by_priority": stacked_bars(
            "chart-priority",
            "Referrals created per day, by priority",
            day_labels,
            _named(series.by_priority, labels.PRIORITY_LABELS),
        ),
        "to_acceptance": stacked_bars(
            "chart-acceptance",
            "Time from referral to acceptance",
            list(series.to_acceptance),
            {"Referrals": list(series.to_acceptance.values())},
        ),
        "to_scheduling": stacked_bars(
            "chart-scheduling",
            "Time from referral to scheduling",
            list(series.to_scheduling),
            {"Referrals": list(series.to_scheduling.values())},
        ),
        "overdue": stacked_bars(
            "chart-overdue",
            "Open referrals past their due time, by destination",
            [labels.DESTINATION_LABELS.get(k, k) for k in report.open_overdue.by_destination],
            {"Overdue": list(report.open_overdue.by_destination.values())},
        ),
    }
    return render(
        request, "referral/report.html", **page_context(**figures, charts=charts, title="Closed-loop report")
    )


@get("/report.csv", media_type="text/csv")
async def report_csv(
    request: Request[Any, Any, State], staff: Staff, db_session: DbSession, now: Now
) -> Response[str]:
    """The report's figures as CSV: one row per (figure, key, value)."""
    require_staff_role(staff, *CLINICIANS)
    figures = await _report_figures(request, db_session, now)
    report, series = figures["report"], figures["series"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["figure", "key", "value"])
    for name, counts in (
        ("by_destination", report.by_destination),
        ("by_priority", report.by_priority),
        ("by_status", report.by_status),
        ("open_overdue_by_destination", report.open_overdue.by_destination),
        ("open_overdue_by_priority", report.open_overdue.by_priority),
        ("time_to_acceptance", series.to_acceptance),
        ("time_to_scheduling", series.to_scheduling),
    ):
        writer.writerows([name, k, v] for k, v in counts.items())
    for name, by_day in (
        ("created_by_destination", series.by_destination),
        ("created_by_priority", series.by_priority),
    ):
        for key, values in by_day.items():
            writer.writerows(
                [f"{name}:{day.isoformat()}", key, n] for day, n in zip(series.days, values, strict=True)
            )
    for name, timing in (
        ("time_to_acceptance", report.time_to_acceptance),
        ("time_to_scheduling", report.time_to_scheduling),
    ):
        writer.writerows(
            [
                [name, "count", timing.count],
                [name, "median_seconds", timing.median_seconds or ""],
                [name, "p90_seconds", timing.p90_seconds or ""],
            ]
        )
    writer.writerow(["closed_share", "closed", report.closed.closed])
    writer.writerow(["closed_share", "of", report.closed.of])
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="referral-report.csv"'},
    )
