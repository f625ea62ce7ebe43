"""Triage: where an intake goes, and why, under each ruleset the clinic has run.

`RULESETS` holds every ruleset by version; `CURRENT` (v2) routes new intakes and amendments. A
referral keeps the version that made it (`ruleset_version`), and its reasons were written by that
version's rules, so a referral triaged under v1 still reads its v1 explanation, and
`GET /v1/triage/rules?version=v1` shows the rules that made it.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from typing import Final

from services.common.contracts.intake_body import IntakeBody
from services.referral.triage import v1, v2
from services.referral.triage.engine import (
    Destination,
    Priority,
    Reason,
    RuleChange,
    RuleDescription,
    RulesDocument,
    TriageOutcome,
    TriageThresholds,
)

__all__ = [
    "CURRENT",
    "RULESETS",
    "Destination",
    "Priority",
    "Reason",
    "RuleChange",
    "RuleDescription",
    "RulesDocument",
    "Ruleset",
    "TriageOutcome",
    "TriageThresholds",
    "rules_document",
    "triage",
    "urgency",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Ruleset:
    version: str
    route: Callable[[IntakeBody, datetime.date, TriageThresholds], TriageOutcome]
    describe: Callable[[TriageThresholds], RulesDocument]


RULESETS: Final[dict[str, Ruleset]] = {
    v1.RULESET_VERSION: Ruleset(v1.RULESET_VERSION, v1.triage, v1.rules_document),
    v2.RULESET_VERSION: Ruleset(v2.RULESET_VERSION, v2.triage, v2.rules_document),
}
CURRENT: Final = v2.RULESET_VERSION

#: How urgent a (destination, priority) is, lower first: the current ruleset's order.
urgency = v2.urgency


def triage(
    intake: IntakeBody,
    today: datetime.date,
    thresholds: TriageThresholds = TriageThresholds(),
    *,
    version: str = CURRENT,
) -> TriageOutcome:
    """Route one intake under `version` (the current ruleset unless named)."""
    return RULESETS[version].route(intake, today, thresholds)


def rules_document(
    version: str = CURRENT, thresholds: TriageThresholds = TriageThresholds()
) -> RulesDocument:
    """The published form of ruleset `version` (a KeyError for a version the clinic never ran)."""
    return RULESETS[version].describe(thresholds)
