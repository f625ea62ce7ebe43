"""The intake service: patients, intakes, amendments, the referral status mirror, inbound forms."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from functools import partial

import structlog
from litestar.datastructures import State

from services.common.bootstrap import create_service_app
from services.common.clock import Clock, SystemClock, now_of, until_stopped
from services.common.http.web import ServiceSpec, background_loop, sessionmaker_from
from services.common.settings import Settings
from services.intake import fhir
from services.intake.inbound import receive_intake_form
from services.intake.intakes.controllers import IntakeController, PatientController
from services.intake.intakes.idempotency import purge_expired_keys
from services.intake.intakes.patients import patient_ids_by_mrn
from services.intake.intakes.submit_lane import SubmitIntakeLane
from services.intake.mirror import referral_mirror
from services.intake.pages import TEMPLATES, front_desk_pages

NAME = "intake"
#: Expired idempotency keys are already ignored; this only keeps their table small.
PURGE_EVERY_SECONDS = 3600.0
log = structlog.get_logger(__name__)


def idempotency_purge(state: State) -> AbstractAsyncContextManager[None]:
    async def purge() -> None:
        async with sessionmaker_from(state)() as session:
            purged = await purge_expired_keys(session, now_of(state))
            await session.commit()
        if purged:
            log.info("idempotency_keys_purged", count=purged)

    async def loop(stop: asyncio.Event) -> None:
        await until_stopped(stop, purge, PURGE_EVERY_SECONDS, failed="idempotency_purge_failed")

    return background_loop(state, "intake:idempotency_purge", loop)


def service_spec(settings: Settings, clock: Clock | None = None) -> ServiceSpec:
    return ServiceSpec(
        name=NAME,
        title="Clinic intake service",
        description="Front-desk intake of back-pain history and red flags; each intake is triaged "
        "by the referral service and its referral status mirrored here.",
        route_handlers=[
            IntakeController,
            PatientController,
            receive_intake_form,
            fhir.router,
            front_desk_pages(),
        ],
        template_dirs=[TEMPLATES],
        patients_by_mrn=patient_ids_by_mrn,
        fast_lanes=[SubmitIntakeLane],
        workers=[idempotency_purge],
        consumers=[referral_mirror],
        state={"clinic_clock": clock or SystemClock()},
    )


#: `create_app(settings=None, engine=None, *, run_workers=False, clock=None)`: the intake app.
create_app = partial(create_service_app, service_spec)
