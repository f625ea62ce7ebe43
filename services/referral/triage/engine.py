"""What every ruleset shares: the outcome vocabulary, the thresholds, the rule record, how matched
rules combine into an outcome, and the published form of a ruleset.

A ruleset (`v1`, `v2`) is data: a tuple of `Rule` records in its precedence order, a function
deriving the facts its predicates read, and an urgency order. `evaluate` is the one place rules
are combined, so two rulesets differ only in their data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import msgspec

from services.common.contracts.vocabulary import Destination, Priority

__all__ = [
    "Destination",
    "Priority",
    "Reason",
    "Rule",
    "RuleChange",
    "RuleDescription",
    "RulesDocument",
    "TriageOutcome",
    "TriageThresholds",
    "describe",
    "evaluate",
]


@dataclasses.dataclass(frozen=True, slots=True)
class TriageThresholds:
    """The numbers the rules use, with the rulesets' defaults; the service builds one from
    settings. Each ruleset reads the ones it needs; rule texts quote them as `{name}`."""

    chronic_weeks: int = 12
    """Pain is chronic when it has lasted more than this many weeks (ACP 2017)."""
    acute_weeks: int = 4
    """Pain is acute below this many weeks, subacute from it up to chronic_weeks."""
    severe_intensity: int = 7
    """Intensity (0-10) at or above which pain is severe."""
    procedure_window_weeks: int = 26
    """A regenerative procedure within this many weeks (inclusive) is recent."""
    axspa_onset_age: int = 45
    """Axial spondyloarthritis is considered only when the pain began before this age."""
    axspa_early_onset_age: int = 35
    """Pain that began before this age counts as one inflammatory feature."""
    axspa_min_features: int = 4
    """Inflammatory features needed to suspect axial spondyloarthritis (NICE NG65)."""
    early_procedure_days: int = 14
    """v2: a procedure at most this many days ago is early (nerve symptoms then are stat)."""
    exercise_trial_weeks: int = 6
    """v2: weeks of exercise therapy that make an adequate conservative trial (NICE NG59)."""
    fracture_risk_age: int = 70
    """v2: from this age a patient has fracture risk without any other factor."""
    older_age: int = 50
    """v2: above this age new pain is rechecked if not better (ACP/APS)."""
    urgent_hours: int = 24
    """The urgent service level, quoted by the texts of urgent rules (a setting)."""


class Reason(msgspec.Struct, frozen=True, kw_only=True):
    """Why an intake went where it went, as stored on the referral and shown to the clinician."""

    code: str
    text: str
    source: str


class TriageOutcome(msgspec.Struct, frozen=True, kw_only=True):
    destination: Destination
    priority: Priority
    reasons: list[Reason]
    """Every matched rule, the deciding one first; never empty."""
    ruleset_version: str


F = TypeVar("F")


@dataclasses.dataclass(frozen=True, slots=True)
class Rule(Generic[F]):
    """One rule of a ruleset, over the facts `F` its ruleset derives.

    `text` may quote thresholds as `{chronic_weeks}` etc.; `detail`, when set, adds what this
    intake showed (which questions were unsure, which features counted) to the reason. A
    `fallback` rule is recorded only when no other rule matched; a rule `silenced_by` some
    destinations is not recorded when a rule of one of them matched."""

    code: str
    destination: Destination
    priority: Priority
    text: str
    source: str
    predicate: Callable[[F], bool] = dataclasses.field(repr=False, compare=False)
    detail: Callable[[F], str] | None = dataclasses.field(default=None, repr=False, compare=False)
    fallback: bool = False
    silenced_by: frozenset[Destination] = frozenset()

    def render_text(self, thresholds: TriageThresholds) -> str:
        return self.text.format(**dataclasses.asdict(thresholds))


def evaluate(
    rules: Sequence[Rule[F]],
    facts: F,
    thresholds: TriageThresholds,
    *,
    urgency: Callable[[Rule[F]], tuple[int, ...]],
    version: str,
) -> TriageOutcome:
    """Every rule evaluated, every match a reason; the most urgent match decides, the first in
    rule order among equally urgent ones (the sort is stable), and is listed first."""
    matched = [rule for rule in rules if not rule.fallback and rule.predicate(facts)]
    present = {rule.destination for rule in matched}
    matched = [rule for rule in matched if not rule.silenced_by & present]
    if not matched:
        matched = [rule for rule in rules if rule.fallback and rule.predicate(facts)]
    matched.sort(key=urgency)
    deciding = matched[0]
    reasons = []
    for rule in matched:
        text = rule.render_text(thresholds)
        if rule.detail is not None:
            text = f"{text} {rule.detail(facts)}"
        reasons.append(Reason(code=rule.code, text=text, source=rule.source))
    return TriageOutcome(
        destination=deciding.destination,
        priority=deciding.priority,
        reasons=reasons,
        ruleset_version=version,
    )


# --- The published ruleset ----------------------------------------------------------------------


class RuleDescription(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    destination: Destination
    priority: Priority
    text: str
    source: str


class RuleChange(msgspec.Struct, frozen=True, kw_only=True):
    """One line of what a ruleset changed from the one before it."""

    change: str
    """`added`, `changed` or `removed`."""
    code: str
    summary: str


class RulesDocument(msgspec.Struct, frozen=True, kw_only=True):
    """The body of `GET /v1/triage/rules`: what a clinic reviews is what `triage` runs."""

    ruleset_version: str
    thresholds: TriageThresholds
    rules: list[RuleDescription]
    changes_from: str | None = None
    """The ruleset this one replaced, when there was one."""
    changes: list[RuleChange] = msgspec.field(default_factory=list)
    """What changed from `changes_from`, rule by rule."""


def describe(
    version: str,
    rules: Sequence[Rule[F]],
    thresholds: TriageThresholds,
    *,
    changes_from: str | None = None,
    changes: Sequence[RuleChange] = (),
) -> RulesDocument:
    """A ruleset in its precedence order, with texts rendered for `thresholds`."""
    return RulesDocument(
        ruleset_version=version,
        thresholds=thresholds,
        rules=[
            RuleDescription(
                code=rule.code,
                destination=rule.destination,
                priority=rule.priority,
                text=rule.render_text(thresholds),
                source=rule.source,
            )
            for rule in rules
        ],
        changes_from=changes_from,
        changes=list(changes),
    )
