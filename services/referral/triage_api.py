"""`GET /v1/triage/rules` and `POST /v1/triage/preview`: the rulesets, readable by a clinic, and
what the current one would decide for an intake (nothing stored, nothing emitted)."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.params import JSONBody, Parameter, RawBody

from services.common.access.auth import Role, require_roles
from services.common.clock import clinic_today
from services.common.contracts.intake_body import IntakeBody
from services.common.contracts.intake_form import latest_today, parse_intake
from services.common.http.deps import ClinicSettings, Now
from services.common.http.problems import AUTH_RESPONSES, FieldProblem, UnprocessableProblem
from services.referral.referrals.triaging import thresholds_from
from services.referral.triage import CURRENT, RULESETS, RulesDocument, TriageOutcome, rules_document, triage


class TriageController(Controller):
    path = "/v1/triage"
    tags = ["triage"]

    @get("/rules", operation_id="listTriageRules", summary="The published triage rules", sync_to_thread=False)
    def rules(
        self,
        settings: ClinicSettings,
        version: str = Parameter(
            default=CURRENT,
            description="The ruleset to show: the current one unless named (a referral names its own).",
        ),
    ) -> RulesDocument:
        """Every rule of a ruleset: code, destination, priority, text and source; for the current
        ruleset also what changed from the one before."""
        if version not in RULESETS:
            raise UnprocessableProblem(
                [
                    FieldProblem(
                        field="version", message="not a ruleset this clinic has run", allowed=list(RULESETS)
                    )
                ]
            )
        return rules_document(version, thresholds_from(settings))

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
        """Where this intake would go under the current ruleset, and why. Stores nothing and
        emits nothing.

        The body is read exactly as `POST /v1/intakes` reads it (strict types, the same 422s)."""
        intake = parse_intake(body, latest_today(now, settings.clinic_time_zone))
        return triage(intake, clinic_today(now, settings.clinic_time_zone), thresholds_from(settings))
