"""The intake service: patients, intakes, amendments, the referral status mirror."""

from __future__ import annotations

from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.bootstrap import create_service_app
from services.common.settings import Settings
from services.common.web import ServiceSpec
from services.intake.intakes.controllers import IntakeController

NAME = "intake"


def service_spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name=NAME,
        title="Clinic intake service",
        description="Front-desk intake of back-pain history and red flags; each intake is triaged "
        "by the referral service and its referral status mirrored here.",
        route_handlers=[IntakeController],
        workers=[],
    )


def create_app(
    settings: Settings | None = None, engine: AsyncEngine | None = None, *, run_workers: bool = False
) -> Litestar:
    return create_service_app(service_spec, settings, engine, run_workers=run_workers)
