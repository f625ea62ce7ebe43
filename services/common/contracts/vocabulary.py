"""The clinic's closed sets of words, each defined once, each value with a plain-language label.

Everything that names a role, a destination, a priority, a referral status or move, an answer on the
intake form, an event type or a queue consumer imports it from here: triage, the form parser, the
API schemas (so the OpenAPI documents list the values), auth, the CLI, webhooks and any page that
shows a label. The values are the ones stored in the database and sent in JSON (StrEnum: a member
compares equal to its plain string); `label` is what a person reads.

`tests/test_vocabulary.py` walks `services/` and fails on a second literal definition of the
destination or referral-status sets.
"""

from __future__ import annotations

import enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Self, cast

__all__ = [
    "ACTIONS",
    "OPEN_STATUSES",
    "PRIORITY_RANK",
    "Action",
    "Complication",
    "Condition",
    "ConsumerName",
    "Destination",
    "EventType",
    "Priority",
    "RadiatesTo",
    "RedFlagAnswer",
    "ReferralStatus",
    "Region",
    "RiskFactor",
    "Role",
    "Sex",
    "SpecialistDestination",
    "SubscribableEvent",
    "Symptom",
    "Treatment",
    "TreatmentOutcome",
    "Trend",
    "Word",
]


class Word(enum.StrEnum):
    """A value of a closed set with its label: declare members as `NAME = "value", "Label"`."""

    _value_: str
    label: str

    def __new__(cls, value: str, label: str = "") -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label or value.replace("_", " ").capitalize()
        return member

    @classmethod
    def subset(cls, name: str, of: type[Word], *left_out: Word) -> type[Word]:
        """A closed set derived from `of` without `left_out` (same values and labels): a
        narrower type for an API field, never a second list of the same words."""
        members = [(w.name, (w.value, w.label)) for w in of if w not in left_out]
        made: Any = Word(name, members, module=__name__)  # type: ignore[call-arg, arg-type]
        return cast(type[Word], made)


# --- Who works with the system --------------------------------------------------------------------


class Role(Word):
    """A staff account's or an API key's role (member names as stored: lower case)."""

    front_desk = "front_desk", "Front desk"
    specialist = "specialist", "Specialist"
    clinician = "clinician", "Clinician"
    admin = "admin", "Administrator"


# --- Where a referral goes, and how soon --------------------------------------------------------


class Destination(Word):
    """Declared most severe first: that order is triage's precedence between destinations."""

    URGENT_CARE = "urgent_care", "Urgent care"
    CLINICIAN_REVIEW = "clinician_review", "Clinician review"
    REGENERATIVE_MEDICINE = "regenerative_medicine", "Regenerative medicine"
    PAIN_MANAGEMENT = "pain_management", "Pain management"


#: The destinations a specialist works at (an API key's destination, a webhook filter): every
#: destination but clinician review, which is a clinician's hold rather than a place.
if TYPE_CHECKING:  # the type checker reads it as the destination it is
    SpecialistDestination = Destination
else:
    SpecialistDestination = Word.subset("SpecialistDestination", Destination, Destination.CLINICIAN_REVIEW)


class Priority(Word):
    """FHIR request-priority codes, most severe first."""

    STAT = "stat", "Immediately"
    URGENT = "urgent", "Urgent (within a day)"
    ROUTINE = "routine", "Routine"


#: Worklist order: the most severe priority first.
PRIORITY_RANK: Final = MappingProxyType({p.value: rank for rank, p in enumerate(Priority)})


# --- Referral statuses and the moves between them ------------------------------------------------


class ReferralStatus(Word):
    NEEDS_REVIEW = "needs_review", "Needs clinician review"
    REQUESTED = "requested", "Requested"
    ACCEPTED = "accepted", "Accepted"
    DECLINED = "declined", "Declined"
    SCHEDULED = "scheduled", "Scheduled"
    COMPLETED = "completed", "Completed"
    NO_SHOW = "no_show", "Did not attend"
    CANCELLED = "cancelled", "Cancelled"


OPEN_STATUSES: Final = frozenset(
    {ReferralStatus.NEEDS_REVIEW, ReferralStatus.REQUESTED, ReferralStatus.ACCEPTED, ReferralStatus.SCHEDULED}
)


class Action(Word):
    """A move a person makes on a referral (the last segment of its route)."""

    ACCEPT = "accept", "Accept"
    DECLINE = "decline", "Decline"
    SCHEDULE = "schedule", "Schedule"
    COMPLETE = "complete", "Complete"
    NO_SHOW = "no-show", "Record a missed appointment"
    CANCEL = "cancel", "Cancel"
    RESOLVE = "resolve", "Resolve clinician review"


#: The one transition table: action -> (statuses it may be taken from, status it leads to).
ACTIONS: Final[MappingProxyType[Action, tuple[frozenset[ReferralStatus], ReferralStatus]]] = MappingProxyType(
    {
        Action.ACCEPT: (frozenset({ReferralStatus.REQUESTED}), ReferralStatus.ACCEPTED),
        Action.DECLINE: (frozenset({ReferralStatus.REQUESTED}), ReferralStatus.DECLINED),
        Action.SCHEDULE: (frozenset({ReferralStatus.ACCEPTED}), ReferralStatus.SCHEDULED),
        Action.COMPLETE: (frozenset({ReferralStatus.SCHEDULED}), ReferralStatus.COMPLETED),
        Action.NO_SHOW: (frozenset({ReferralStatus.SCHEDULED}), ReferralStatus.NO_SHOW),
        Action.CANCEL: (OPEN_STATUSES, ReferralStatus.CANCELLED),
        Action.RESOLVE: (frozenset({ReferralStatus.NEEDS_REVIEW}), ReferralStatus.REQUESTED),
    }
)


# --- The intake form's closed sets ---------------------------------------------------------------


class Region(Word):
    LOWER_BACK = "lower_back", "Lower back"
    UPPER_BACK = "upper_back", "Upper back"
    NECK = "neck", "Neck"


class Trend(Word):
    IMPROVING = "improving", "Getting better"
    STABLE = "stable", "About the same"
    WORSENING = "worsening", "Getting worse"


class RadiatesTo(Word):
    LEFT_LEG = "left_leg", "Left leg"
    RIGHT_LEG = "right_leg", "Right leg"
    LEFT_ARM = "left_arm", "Left arm"
    RIGHT_ARM = "right_arm", "Right arm"


class Symptom(Word):
    STIFFNESS = "stiffness", "Stiffness"
    RADIATING_PAIN = "radiating_pain", "Pain that spreads (into a leg or arm)"
    MUSCLE_SPASMS = "muscle_spasms", "Muscle spasms"
    NIGHT_PAIN = "night_pain", "Pain at night"
    NIGHT_WAKING = "night_waking", "Woken at night by the pain"
    MORNING_STIFFNESS = "morning_stiffness", "Stiff in the morning (more than 30 minutes)"
    ALTERNATING_BUTTOCK_PAIN = "alternating_buttock_pain", "Buttock pain that switches sides"
    IMPROVES_WITH_EXERCISE = "improves_with_exercise", "Gets better with exercise"
    NSAID_RESPONSE = "nsaid_response", "Eased by anti-inflammatory tablets (such as ibuprofen)"


class Condition(Word):
    HERNIATED_DISC = "herniated_disc", "Herniated (slipped) disc"
    DEGENERATIVE_DISC_DISEASE = "degenerative_disc_disease", "Degenerative disc disease"
    SPINAL_STENOSIS = "spinal_stenosis", "Spinal stenosis"
    COMPRESSION_FRACTURE = "compression_fracture", "Compression fracture of the spine"
    OSTEOARTHRITIS = "osteoarthritis", "Osteoarthritis"
    SPONDYLOSIS = "spondylosis", "Spondylosis"
    OSTEOPOROSIS = "osteoporosis", "Osteoporosis"
    PSORIASIS = "psoriasis", "Psoriasis"


class RiskFactor(Word):
    POOR_POSTURE = "poor_posture", "Poor posture"
    OBESITY = "obesity", "Obesity"
    INACTIVITY = "inactivity", "Little physical activity"
    STRESS = "stress", "Stress"
    ANXIETY = "anxiety", "Anxiety"
    LONG_TERM_CORTICOSTEROIDS = "long_term_corticosteroids", "Takes steroid tablets long term"
    IV_DRUG_USE = "iv_drug_use", "Injects drugs"
    RECENT_TRAUMA = "recent_trauma", "Recent fall, accident or injury"
    FAMILY_HISTORY_SPONDYLOARTHRITIS = (
        "family_history_spondyloarthritis",
        "Family history of spondyloarthritis",
    )
    #: Chemotherapy, biologics, transplant drugs, HIV: other than long-term corticosteroids.
    IMMUNOSUPPRESSION = "immunosuppression", "Immunosuppressing treatment or condition"


class Treatment(Word):
    PHYSICAL_THERAPY = "physical_therapy", "Physical therapy"
    MEDICATION = "medication", "Medication"
    CORTICOSTEROID_INJECTION = "corticosteroid_injection", "Steroid injection"
    SURGERY = "surgery", "Surgery"
    CHIROPRACTIC = "chiropractic", "Chiropractic"
    ACUPUNCTURE = "acupuncture", "Acupuncture"
    MASSAGE = "massage", "Massage"
    YOGA_OR_PILATES = "yoga_or_pilates", "Yoga or Pilates"
    HEAT_OR_COLD = "heat_or_cold", "Heat or cold packs"
    EXERCISE = "exercise", "Exercise"
    WEIGHT_MANAGEMENT = "weight_management", "Weight management"


class TreatmentOutcome(Word):
    NO_RELIEF = "no_relief", "No relief"
    PARTIAL_RELIEF = "partial_relief", "Some relief"
    GOOD_RELIEF = "good_relief", "Good relief"


class RedFlagAnswer(Word):
    """`unsure` is a real answer, not a missing one: triage never guesses on a red flag."""

    YES = "yes", "Yes"
    NO = "no", "No"
    UNSURE = "unsure", "Not sure"


class Complication(Word):
    INFECTION = "infection", "Infection"
    NERVE_DAMAGE = "nerve_damage", "Nerve damage"
    ALLERGIC_REACTION = "allergic_reaction", "Allergic reaction"


class Sex(Word):
    FEMALE = "female", "Female"
    MALE = "male", "Male"
    OTHER = "other", "Other"
    UNKNOWN = "unknown", "Not asked"


# --- Events and who consumes them ----------------------------------------------------------------


class EventType(Word):
    """What the services publish on the queue (and what a webhook subscriber may ask for)."""

    INTAKE_SUBMITTED = "intake.submitted", "Intake submitted"
    INTAKE_AMENDED = "intake.amended", "Intake amended"
    REFERRAL_CREATED = "referral.created", "Referral created"
    REFERRAL_STATUS_CHANGED = "referral.status_changed", "Referral status changed"
    REFERRAL_AMENDED = "referral.amended", "Referral amended"
    REFERRAL_FOLLOW_UP_DUE = "referral.follow_up_due", "Follow-up due"


#: What a webhook subscriber may ask for (an amendment reaches subscribers as its new referral).
if TYPE_CHECKING:
    SubscribableEvent = EventType
else:
    SubscribableEvent = Word.subset("SubscribableEvent", EventType, EventType.INTAKE_AMENDED)


class ConsumerName(Word):
    """The queue's consumers (each keeps its own deliveries and dead letters)."""

    REFERRAL_TRIAGE = "referral.triage", "Triage of new and amended intakes"
    INTAKE_REFERRAL_MIRROR = "intake.referral_mirror", "Front desk's copy of referral statuses"
    REFERRAL_WEBHOOKS = "referral.webhooks", "Outgoing webhooks"
