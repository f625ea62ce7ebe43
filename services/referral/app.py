"""The referral service: triage, referrals and their lifecycle, follow-ups, webhooks."""

from __future__ import annotations

from functools import partial

from services.common.bootstrap import create_service_app
from services.common.clock import Clock, SystemClock
from services.common.http.web import ServiceSpec
from services.common.settings import Settings
from services.referral import fhir, webhooks
from services.referral.followups import FollowUpController, follow_up_worker
from services.referral.pages import TEMPLATES, referral_pages
from services.referral.referrals.controllers import ReferralController
from services.referral.referrals.queries import patient_ids_by_mrn
from services.referral.reports import ReportController
from services.referral.triage_api import TriageController
from services.referral.triage_consumer import triage_consumer
from services.referral.webhooks.catalogue import outgoing_webhooks

NAME = "referral"


def service_spec(settings: Settings, clock: Clock | None = None) -> ServiceSpec:
    clock = clock or SystemClock()
    return ServiceSpec(
        name=NAME,
        title="Clinic referral service",
        description="Triage of intakes by published criteria, referrals to urgent care, pain "
        "management or regenerative medicine, specialists' worklists and signed webhooks.",
        route_handlers=[
            ReferralController,
            FollowUpController,
            ReportController,
            TriageController,
            *webhooks.route_handlers,
            fhir.router,
            referral_pages(),
        ],
        template_dirs=[TEMPLATES],
        patients_by_mrn=patient_ids_by_mrn,
        consumers=[triage_consumer(settings, clock), webhooks.consumer],
        workers=[webhooks.sender_worker, follow_up_worker],
        state={"clinic_clock": clock},
        webhooks=outgoing_webhooks(),
    )


#: `create_app(settings=None, engine=None, *, run_workers=False, clock=None)`: the referral app.
create_app = partial(create_service_app, service_spec)
