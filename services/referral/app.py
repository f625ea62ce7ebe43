"""The referral service: triage, referrals and their lifecycle, follow-ups, webhooks."""

from __future__ import annotations

from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.bootstrap import create_service_app
from services.common.settings import Settings
from services.common.web import ServiceSpec

NAME = "referral"


def service_spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name=NAME,
        title="Clinic referral service",
        description="Triage of intakes by published criteria, referrals to urgent care, pain "
        "management or regenerative medicine, specialists' worklists and signed webhooks.",
        route_handlers=[],
        workers=[],
    )


def create_app(
    settings: Settings | None = None, engine: AsyncEngine | None = None, *, run_workers: bool = False
) -> Litestar:
    return create_service_app(service_spec, settings, engine, run_workers=run_workers)
