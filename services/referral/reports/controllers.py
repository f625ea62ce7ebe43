"""`GET /v1/reports/referrals`: the closed-loop report, for clinicians and admins."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from litestar import Controller, get
from litestar.params import QueryParameter

from services.common.errors import FieldProblem, InvalidFields
from services.common.http.deps import Now
from services.common.http.web import DbSession
from services.referral.referrals.web import CLINICIANS, READ_RESPONSES, DestinationFilter
from services.referral.reports.schemas import ReferralReport
from services.referral.reports.services import referral_report

DEFAULT_PERIOD = dt.timedelta(days=30)


def _moment(field: str, value: str | None) -> dt.datetime | None:
    """An RFC 3339 time, or a date (its midnight); without an offset it is UTC."""
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidFields(
            [FieldProblem(field=field, message="must be an RFC 3339 time (2026-11-01T00:00:00Z) or a date")]
        ) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


class ReportController(Controller):
    path = "/v1/reports"
    tags = ["reports"]

    @get(
        "/referrals",
        operation_id="getReferralReport",
        summary="Closed-loop referral report",
        guards=[CLINICIANS],
        responses=READ_RESPONSES,
    )
    async def referrals(
        self,
        now: Now,
        db_session: DbSession,
        since: Annotated[
            str | None,
            QueryParameter(
                description="start of the period, inclusive: an RFC 3339 time, or a date meaning its "
                "midnight UTC (default: 30 days before `until`)"
            ),
        ] = None,
        until: Annotated[
            str | None,
            QueryParameter(description="end of the period, exclusive: a time or a date (default: now)"),
        ] = None,
        destination: DestinationFilter = None,
    ) -> ReferralReport:
        """How the referrals created in `[since, until)` fared: counts by destination, priority and
        status; median and 90th-percentile time from creation to acceptance and to scheduling;
        open overdue; and the share closed (its definition is in the response)."""
        end = _moment("until", until) or now
        start = _moment("since", since) or end - DEFAULT_PERIOD
        if start >= end:
            raise InvalidFields([FieldProblem(field="since", message="must be before until")])
        return await referral_report(db_session, since=start, until=end, as_of=now, destination=destination)
