"""The closed-loop report over referrals (`GET /v1/reports/referrals`)."""

from services.referral.reports.controllers import ReportController

__all__ = ["ReportController"]
