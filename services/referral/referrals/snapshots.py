"""What a referral keeps of a triaged intake version: the patient snapshot, the clinical
picture and the triage's reasons (together, the referral triage proposes: `triaged`)."""

from __future__ import annotations

from typing import Any

import msgspec

from services.common.contracts.events import IntakeSubmitted
from services.referral.referrals.lifecycle import ReferralDraft
from services.referral.referrals.schemas import ClinicalPicture, Contact
from services.referral.triage import TriageOutcome


def triaged(event: IntakeSubmitted, outcome: TriageOutcome) -> ReferralDraft:
    """The referral triage proposes for an intake version."""
    return ReferralDraft(
        intake_id=event.intake_id,
        intake_version=event.intake_version,
        patient=patient_snapshot(event),
        clinical=clinical_picture(event),
        destination=outcome.destination.value,
        priority=outcome.priority.value,
        reasons=triage_reasons(outcome),
        ruleset_version=outcome.ruleset_version,
    )


def triage_reasons(outcome: TriageOutcome) -> list[dict[str, str]]:
    return [{"code": r.code, "text": r.text, "source": r.source} for r in outcome.reasons]


def patient_snapshot(event: IntakeSubmitted) -> dict[str, Any]:
    p = event.intake.patient
    return {
        "given_name": p.given_name,
        "family_name": p.family_name,
        "birth_date": p.birth_date.isoformat(),
        "mrn": p.mrn,
        "patient_id": str(event.patient_id),  # the intake service's patient (FHIR references it)
    }


def clinical_picture(event: IntakeSubmitted) -> dict[str, Any]:
    """What the referral keeps of the intake version for its destination and clinicians: the
    contact details for booking and every clinical answer (names, birth date and MRN are in the
    patient snapshot). Never logged."""
    body = event.intake
    answers = {name: getattr(body, name) for name in ClinicalPicture.__struct_fields__ if name != "contact"}
    picture = ClinicalPicture(
        contact=Contact(sex=body.patient.sex, phone=body.patient.phone, email=body.patient.email), **answers
    )
    result: dict[str, Any] = msgspec.to_builtins(picture)
    return result
