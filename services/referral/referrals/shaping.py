"""Referrals as the API shows them: the output shapes, and what each role may see of them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from services.common.access.auth import Principal, Role
from services.common.contracts.vocabulary import OPEN_STATUSES
from services.referral.db.models import FollowUp, Referral
from services.referral.referrals.lifecycle import allowed_actions
from services.referral.referrals.schemas import (
    ClinicalPicture,
    FollowUpOut,
    HistoryEntry,
    PatientSnapshot,
    ReferralOut,
)
from services.referral.triage.engine import Reason


def follow_up_out(f: FollowUp) -> FollowUpOut:
    """The follow-up's row as the API shows it (the same fields, by name)."""
    return msgspec.convert(f, FollowUpOut, from_attributes=True)


def patient_out(snapshot: dict[str, Any]) -> PatientSnapshot:
    return PatientSnapshot(
        given_name=snapshot["given_name"],
        family_name=snapshot["family_name"],
        birth_date=dt.date.fromisoformat(snapshot["birth_date"]),
        mrn=snapshot.get("mrn"),
    )


def sees_clinical(principal: Principal) -> bool:
    """Who sees a referral's clinical picture (a specialist only on its own destination's
    referrals, which are the only ones it can load): not the front desk."""
    return principal.role in (Role.specialist, Role.clinician, Role.admin)


def clinical_out(referral: Referral) -> ClinicalPicture | None:
    return msgspec.convert(referral.clinical, ClinicalPicture) if referral.clinical else None


def to_out(referral: Referral, now: dt.datetime, *, clinical: bool = False) -> ReferralOut:
    """The referral as the API shows it; with `clinical`, its clinical picture too."""
    return ReferralOut(
        id=referral.id,
        intake_id=referral.intake_id,
        intake_version=referral.intake_version,
        patient=patient_out(referral.patient),
        destination=referral.destination,
        priority=referral.priority,
        status=referral.status,
        reasons=[Reason(**r) for r in referral.reasons],
        ruleset_version=referral.ruleset_version,
        created_at=referral.created_at,
        updated_at=referral.updated_at,
        due_by=referral.due_by,
        overdue=referral.status in OPEN_STATUSES and referral.due_by < now,
        appointment_at=referral.appointment_at,
        close_reason=referral.close_reason,
        history=[
            HistoryEntry(status=h.status, at=h.at, by=h.by, by_id=h.by_id, note=h.note)
            for h in referral.history
        ],
        supersedes=referral.supersedes,
        superseded_by=referral.superseded_by,
        amendment_of=referral.amendment_of,
        follow_ups=[follow_up_out(f) for f in referral.follow_ups],
        allowed_actions=allowed_actions(referral.status),
        clinical=clinical_out(referral) if clinical else None,
    )


def shaped_for(principal: Principal, referral: ReferralOut) -> ReferralOut:
    """The referral as the caller's role may see it. Front desk (who books and answers the phone)
    sees where it went, how urgent, its status and due date: not the triage reasons, specialists'
    notes or close reason, which are clinical."""
    if principal.role is not Role.front_desk:
        return referral
    return msgspec.structs.replace(
        referral,
        reasons=[],
        close_reason=None,
        history=[msgspec.structs.replace(h, note=None) for h in referral.history],
    )
