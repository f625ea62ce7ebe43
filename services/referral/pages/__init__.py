"""The referral service's staff pages: specialists' worklist and referrals, clinicians' review
queue, every referral and the closed-loop report. Each page calls the same service functions as
the JSON API, with the signed-in person in place of the key."""

from pathlib import Path

from services.referral.pages.views import referral_pages

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

__all__ = ["TEMPLATES", "referral_pages"]
