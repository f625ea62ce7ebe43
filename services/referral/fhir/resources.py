"""Referrals as FHIR resources: a `ServiceRequest` (the order: where, how urgently, why) and a
`Task` (its workflow, versioned by the referral's history), the destinations as
`HealthcareService`s, and the clinic's CodeSystems for triage rules, destinations and statuses.

Well-known codes where they exist: SNOMED CT 3457005 |Patient referral| as the category,
SNOMED CT specialties for urgent care (773568002 |Emergency medicine|) and pain management
(394882004 |Pain management|), HL7 request-priority (routine / urgent / stat, the referral's
own values), the HL7 request and task status codes, and task-code `fulfill`. Regenerative
medicine and clinician review have no SNOMED specialty; they are coded in the clinic's own
`destination` CodeSystem only.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from services.common.contracts.fhir import (
    SNOMED,
    canonical,
    code_system,
    humanize,
    instant,
    intake_fhir_base,
    kebab,
    mrn_system,
)
from services.common.contracts.vocabulary import Destination, ReferralStatus
from services.common.settings import Settings
from services.referral.db.models import Referral
from services.referral.referrals.lifecycle import DESTINATIONS, STATUSES
from services.referral.referrals.triaging import thresholds_from
from services.referral.triage import CURRENT, RULESETS, rules_document

PATIENT_REFERRAL = {"system": SNOMED, "code": "3457005", "display": "Patient referral"}
FULFILL = {
    "system": "http://hl7.org/fhir/CodeSystem/task-code",
    "code": "fulfill",
    "display": "Fulfill the focal request",
}
SPECIALTIES: dict[str, dict[str, str]] = {
    Destination.URGENT_CARE: {"system": SNOMED, "code": "773568002", "display": "Emergency medicine"},
    Destination.PAIN_MANAGEMENT: {"system": SNOMED, "code": "394882004", "display": "Pain management"},
}

#: The referral's status as a ServiceRequest status (the order's life: draft until a clinician
#: has decided where it goes, active while open, revoked if it ended without being done).
REQUEST_STATUS: dict[str, str] = {
    ReferralStatus.NEEDS_REVIEW: "draft",
    ReferralStatus.REQUESTED: "active",
    ReferralStatus.ACCEPTED: "active",
    ReferralStatus.SCHEDULED: "active",
    ReferralStatus.COMPLETED: "completed",
    ReferralStatus.DECLINED: "revoked",
    ReferralStatus.NO_SHOW: "revoked",
    ReferralStatus.CANCELLED: "revoked",
}
#: The referral's status as a Task status (the destination's work on it).
TASK_STATUS: dict[str, str] = {
    ReferralStatus.NEEDS_REVIEW: "draft",
    ReferralStatus.REQUESTED: "requested",
    ReferralStatus.ACCEPTED: "accepted",
    ReferralStatus.DECLINED: "rejected",
    ReferralStatus.SCHEDULED: "in-progress",
    ReferralStatus.COMPLETED: "completed",
    ReferralStatus.NO_SHOW: "failed",
    ReferralStatus.CANCELLED: "cancelled",
}
STATUS_DEFINITIONS: dict[str, str] = {
    ReferralStatus.NEEDS_REVIEW: "Triage could not decide safely; a clinician chooses the destination.",
    ReferralStatus.REQUESTED: "Sent to the destination, waiting for it to accept or decline.",
    ReferralStatus.ACCEPTED: "The destination took the patient on.",
    ReferralStatus.DECLINED: "The destination declined (possibly redirecting to another destination).",
    ReferralStatus.SCHEDULED: "An appointment is booked.",
    ReferralStatus.COMPLETED: "The patient was seen.",
    ReferralStatus.NO_SHOW: "The patient did not attend the appointment.",
    ReferralStatus.CANCELLED: "Cancelled (by staff, or superseded after an amendment).",
}
assert set(REQUEST_STATUS) == set(TASK_STATUS) == set(STATUS_DEFINITIONS) == set(STATUSES)


def service_id(destination: str) -> str:
    return kebab(destination)


def destination_of(service: str) -> Destination | None:
    return next((d for d in Destination if service_id(d) == service), None)


def _coding(settings: Settings, cs_id: str, code: str, display: str | None = None) -> dict[str, str]:
    found = {"system": canonical(settings, "CodeSystem", cs_id), "code": code}
    if display:
        found["display"] = display
    return found


def code_systems(settings: Settings) -> dict[str, dict[str, Any]]:
    """The referral service's own CodeSystems, by id; the triage rules are read from every ruleset
    the clinic has run (current first), so every code a stored referral carries is defined."""
    thresholds = thresholds_from(settings)
    documents = [rules_document(CURRENT, thresholds)] + [
        rules_document(version, thresholds) for version in RULESETS if version != CURRENT
    ]
    seen: set[str] = set()
    concepts = []
    for document in documents:
        for r in document.rules:
            if r.code not in seen:
                seen.add(r.code)
                concepts.append(r)
    return {
        "triage-rule": code_system(
            settings,
            "triage-rule",
            "Triage rules",
            [
                (
                    r.code,
                    r.text,
                    f"Routes to {r.destination.value} at {r.priority.value} priority. Source: {r.source}",
                )
                for r in concepts
            ],
            version=documents[0].ruleset_version,
            description="The rules by which the clinic routes a back-pain intake; a referral's "
            "reasons are the rules that matched.",
        ),
        "destination": code_system(
            settings,
            "destination",
            "Referral destinations",
            [(d, humanize(d), None) for d in DESTINATIONS],
        ),
        "referral-status": code_system(
            settings,
            "referral-status",
            "Referral statuses",
            [(s, humanize(s), STATUS_DEFINITIONS[s]) for s in STATUSES],
        ),
    }


def healthcare_service(settings: Settings, destination: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "HealthcareService",
        "id": service_id(destination),
        "active": True,
        "name": humanize(destination),
        "type": [{"coding": [_coding(settings, "destination", destination, humanize(destination))]}],
    }
    if destination in SPECIALTIES:
        resource["specialty"] = [{"coding": [SPECIALTIES[destination]]}]
    return resource


def _service_reference(destination: str) -> dict[str, Any]:
    return {
        "reference": f"HealthcareService/{service_id(destination)}",
        "type": "HealthcareService",
        "display": humanize(destination),
    }


def patient_reference(settings: Settings, snapshot: dict[str, Any]) -> dict[str, Any]:
    """The patient as the intake service serves it (by URL), with the MRN and name the referral
    carries, so the reference is useful even where the intake service cannot be reached."""
    reference: dict[str, Any] = {
        "type": "Patient",
        "display": f"{snapshot['given_name'].strip()} {snapshot['family_name'].strip()}",
    }
    if snapshot.get("patient_id"):
        reference["reference"] = f"{intake_fhir_base(settings)}/Patient/{snapshot['patient_id']}"
    if snapshot.get("mrn"):
        reference["identifier"] = {"system": mrn_system(settings), "value": snapshot["mrn"]}
    return reference


def service_request(settings: Settings, referral: Referral) -> dict[str, Any]:
    rule_names = {
        r.code: r.text for r in rules_document(referral.ruleset_version, thresholds_from(settings)).rules
    }
    destination_coding = _coding(
        settings, "destination", referral.destination, humanize(referral.destination)
    )
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": str(referral.id),
        "meta": {"lastUpdated": instant(referral.updated_at)},
        "status": REQUEST_STATUS[referral.status],
        "intent": "order",
        "category": [{"coding": [PATIENT_REFERRAL]}],
        "priority": referral.priority,
        "code": {
            "coding": [destination_coding],
            "text": f"Referral to {humanize(referral.destination).lower()}",
        },
        "subject": patient_reference(settings, referral.patient),
        "authoredOn": instant(referral.created_at),
        "performer": [_service_reference(referral.destination)],
        "reasonCode": [
            {
                "coding": [_coding(settings, "triage-rule", r["code"], rule_names.get(r["code"]))],
                "text": r["text"],
            }
            for r in referral.reasons
        ],
        "supportingInfo": [
            {
                "reference": f"{intake_fhir_base(settings)}/QuestionnaireResponse/"
                f"{referral.intake_id}-{referral.intake_version}",
                "type": "QuestionnaireResponse",
                "display": f"Back-pain intake, version {referral.intake_version}",
            }
        ],
    }
    if referral.destination in SPECIALTIES:
        resource["performerType"] = {"coding": [SPECIALTIES[referral.destination]]}
    if referral.appointment_at is not None:
        resource["occurrenceDateTime"] = instant(referral.appointment_at)
    if referral.supersedes is not None:
        resource["replaces"] = [{"reference": f"ServiceRequest/{referral.supersedes}"}]
    if referral.close_reason:
        resource["note"] = [{"text": referral.close_reason}]
    return resource


_APPOINTED = frozenset({"scheduled", "completed", "no_show"})
_CLOSED_WITH_REASON = frozenset({"declined", "cancelled", "no_show"})


def task_versions(referral: Referral) -> int:
    return len(referral.history)


def task(settings: Settings, referral: Referral, version: int | None = None) -> dict[str, Any]:
    """The referral's Task as it was after its `version`-th history entry (default: now). Each
    entry of the history is a version, its status the `businessStatus`."""
    count = task_versions(referral)
    version = count if version is None else version
    entry = referral.history[version - 1]
    last_updated: dt.datetime = referral.updated_at if version == count else entry.at
    business: dict[str, Any] = {
        "coding": [_coding(settings, "referral-status", entry.status, humanize(entry.status))]
    }
    if entry.note:
        business["text"] = entry.note
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": str(referral.id),
        "meta": {"versionId": str(version), "lastUpdated": instant(last_updated)},
        "status": TASK_STATUS[entry.status],
        "businessStatus": business,
        "intent": "order",
        "priority": referral.priority,
        "code": {"coding": [FULFILL]},
        "focus": {"reference": f"ServiceRequest/{referral.id}", "type": "ServiceRequest"},
        "for": patient_reference(settings, referral.patient),
        "authoredOn": instant(referral.created_at),
        "lastModified": instant(entry.at),
        "owner": _service_reference(referral.destination),
        "restriction": {"period": {"end": instant(referral.due_by)}},
    }
    if entry.status in _APPOINTED and referral.appointment_at is not None:
        period = {"start": instant(referral.appointment_at)}
        if entry.status == "completed" and entry.at >= referral.appointment_at:
            period["end"] = instant(entry.at)
        resource["executionPeriod"] = period
    if entry.status in _CLOSED_WITH_REASON:
        reason = entry.note or referral.close_reason
        if reason:
            resource["statusReason"] = {"text": reason}
    return resource
