"""What the referral pages share: who may see them (as the API), the words for actions and
statuses, the signed-in person as the API's caller, and the context every template gets."""

from __future__ import annotations

from typing import Any

from services.common.access.auth import Principal, Role
from services.common.access.staff_sessions import StaffMember
from services.common.contracts import labels
from services.referral.referrals.lifecycle import PRIORITIES, STATUSES
from services.referral.triage import Destination

#: As the API: who reads referrals, who moves them, who resolves reviews (admin always passes).
READERS = (Role.front_desk, Role.specialist, Role.clinician)
ACTORS = (Role.specialist, Role.clinician)
CLINICIANS = (Role.clinician,)
#: The form's words for each action's button.
ACTION_LABELS = {
    "accept": "Accept",
    "decline": "Decline",
    "schedule": "Schedule the appointment",
    "complete": "Mark completed",
    "no-show": "Record a no-show",
    "cancel": "Cancel the referral",
    "resolve": "Resolve the review",
}
STATUS_LABELS = {s: s.replace("_", " ").capitalize() for s in STATUSES}


def principal_for(staff: StaffMember) -> Principal:
    """The signed-in person as the API's caller: same role, same destination, same name in
    history."""
    return Principal(key_id=staff.user_id, name=staff.name, role=staff.role, destination=staff.destination)


def page_context(**context: Any) -> dict[str, Any]:
    return {
        "labels": labels,
        "label": labels.label,
        "labels_of": lambda values: ", ".join(labels.label(v) for v in values),
        "red_flags": labels.RED_FLAG_QUESTIONS,
        "action_labels": ACTION_LABELS,
        "status_labels": STATUS_LABELS,
        "destinations": [d.value for d in Destination],
        "priorities": PRIORITIES,
        **context,
    }
