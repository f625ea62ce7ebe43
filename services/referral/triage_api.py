"""`GET /v1/triage/rules` and `POST /v1/triage/preview`: the ruleset, readable by a clinic, and
what it would decide for an intake (nothing stored, nothing emitted)."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.params import JSONBody, RawBody

from services.common.auth import Role, require_roles
from services.common.deps import ClinicSettings, Now
from services.common.intake_body import IntakeBody
from services.common.intake_form import latest_today, parse_intake
from services.common.problems import AUTH_RESPONSES
from services.referral.referrals.services import thresholds_from
from services.referral.triage import RulesDocument, TriageOutcome, rules_document, triage


class TriageController(Controller):
    path = "/v1/triage"
    tags = ["triage"]

    @get("/rules", operation_id="listTriageRules", summary="The published triage rules", sync_to_thread=False)
    def rules(self, settings: ClinicSettings) -> RulesDocument:
        """Every rule of the running ruleset: code, destination, priority, text and source."""
        return rules_document(thresholds_from(settings))

    @post(
        "/preview",
        operation_id="previewTriage",
        summary="Preview where an intake would go",
        guards=[require_roles(Role.front_desk, Role.clinician, Role.specialist)],
        responses=AUTH_RESPONSES,
        status_code=200,
        sync_to_thread=False,
    )
    def preview(
        self, settings: ClinicSettings, now: Now, data: JSONBody[IntakeBody], body: RawBody
    ) -> TriageOutcome:
        """Where this intake would go, and why. Stores nothing and emits nothing.

        The body is read exactly as `POST /v1/intakes` reads it (strict types, the same 422s)."""
        intake = parse_intake(body, latest_today(now))
        return triage(intake, now.date(), thresholds_from(settings))
