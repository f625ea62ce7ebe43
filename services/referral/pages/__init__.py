"""The referral service's staff pages: specialists' worklist and referrals, clinicians' review
queue, every referral and the closed-loop report. Each page calls the same service functions as
the JSON API, with the signed-in person in place of the key."""

from pathlib import Path
from typing import Any

from services.common.http.pages.web import page_router
from services.referral.pages.admin import admin_pages
from services.referral.pages.clinician import report_csv, report_page, review_queue
from services.referral.pages.worklist import (
    act_page,
    follow_up_done,
    home,
    referral_view,
    worklist_view,
)

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

__all__ = ["TEMPLATES", "referral_pages"]


def referral_pages() -> Any:
    return page_router(
        "/",
        [
            home,
            worklist_view("/worklist", "referral/worklist.html"),
            worklist_view("/worklist/rows", "referral/_worklist_rows.html"),
            worklist_view("/referrals", "referral/all.html"),
            referral_view("", "referral/referral.html"),
            referral_view("/letter", "referral/letter.html"),
            act_page,
            follow_up_done,
            review_queue,
            report_page,
            report_csv,
            admin_pages(),
        ],
    )
