"""Each of the clinic's closed sets is defined once, in `services.common.contracts.vocabulary`.

The walk reads every module under `services/` and reports any other place that spells out the
destination set or the referral-status set as literals: an Enum class, a tuple/list/set/dict, a
`Literal[...]`, CLI choices. Deriving from the vocabulary (`tuple(Destination)`) is fine.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import services
from services.common.contracts import vocabulary
from services.common.contracts.vocabulary import (
    ACTIONS,
    OPEN_STATUSES,
    PRIORITY_RANK,
    Action,
    Destination,
    Priority,
    ReferralStatus,
    SpecialistDestination,
    SubscribableEvent,
    Word,
)

SERVICES = Path(services.__file__).parent
HOME = Path(vocabulary.__file__)
#: A set is "the destinations" if it names two of them, "the statuses" if it names two statuses.
MARKERS = {
    "destination": {"urgent_care", "pain_management"},
    "referral status": {"requested", "accepted"},
}


def _strings(node: ast.AST) -> set[str]:
    """The string constants a literal collection (or an Enum body, or Literal[...]) holds."""
    if isinstance(node, ast.ClassDef):
        values: set[str] = set()
        for stmt in node.body:
            if isinstance(stmt, ast.Assign):
                values |= {
                    c.value
                    for c in ast.walk(stmt.value)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                }
        return values
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    if isinstance(node, ast.Dict):
        return {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return set()


def definitions(source: str) -> list[tuple[str, int]]:
    """(which closed set, line) for every literal definition of one in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        held = _strings(node)
        found += [(name, getattr(node, "lineno", 0)) for name, marker in MARKERS.items() if marker <= held]
    return found


def test_the_walk_finds_a_second_definition() -> None:
    source = (
        "import enum\n"
        "class Dest(enum.StrEnum):\n    A = 'urgent_care'\n    B = 'pain_management'\n"
        "STATES = frozenset({'requested', 'accepted'})\n"
        "def f(x: Literal['urgent_care', 'pain_management']) -> None: ...\n"
        "parser.add_argument('--d', choices=['pain_management', 'urgent_care'])\n"
        "RANK = {'requested': 0, 'accepted': 1}\n"
    )
    assert sorted(definitions(source)) == [
        ("destination", 2),
        ("destination", 6),
        ("destination", 7),
        ("referral status", 5),
        ("referral status", 8),
    ]


def test_destinations_and_statuses_are_defined_only_in_the_vocabulary() -> None:
    elsewhere = [
        f"{path.relative_to(SERVICES.parent)}:{line} defines the {name} set again"
        for path in sorted(SERVICES.rglob("*.py"))
        if path != HOME
        for name, line in definitions(path.read_text())
    ]
    assert elsewhere == []
    # ... and once there: the enums (the transition table refers to members, not literals).
    assert sorted(name for name, _ in definitions(HOME.read_text())) == ["destination", "referral status"]


@pytest.mark.parametrize(
    "words",
    [w for w in vars(vocabulary).values() if isinstance(w, type) and issubclass(w, Word) and w is not Word],
)
def test_every_word_has_a_plain_language_label(words: type[Word]) -> None:
    for word in words:
        assert word.label.strip(), word
        assert "_" not in word.label, word


def test_derived_sets_keep_values_and_labels() -> None:
    assert [d.value for d in SpecialistDestination] == [
        "urgent_care",
        "regenerative_medicine",
        "pain_management",
    ]
    assert SpecialistDestination("pain_management").label == Destination.PAIN_MANAGEMENT.label
    assert "intake.amended" not in {e.value for e in SubscribableEvent}
    with pytest.raises(ValueError, match="clinician_review"):
        SpecialistDestination("clinician_review")


def test_one_transition_table() -> None:
    assert set(ACTIONS) == set(Action)
    assert ACTIONS[Action.RESOLVE] == ({ReferralStatus.NEEDS_REVIEW}, ReferralStatus.REQUESTED)
    assert ACTIONS[Action.CANCEL][0] == OPEN_STATUSES
    closed = set(ReferralStatus) - OPEN_STATUSES
    assert all(not (sources & closed) for sources, _ in ACTIONS.values())
    assert [PRIORITY_RANK[p] for p in Priority] == [0, 1, 2]


def test_pages_read_each_label_from_the_vocabulary() -> None:
    """A stored code (plain string) or a member shows as the vocabulary's words, including a value
    added to a closed set later (immunosuppression came with ruleset v2)."""
    from services.common.contracts import labels

    for words in (vocabulary.RiskFactor, vocabulary.Symptom, vocabulary.Sex, Destination, Priority):
        for word in words:
            assert labels.label(word) == labels.label(word.value) == word.label
    assert labels.label("immunosuppression") == "Immunosuppressing treatment or condition"
    assert labels.DESTINATION_LABELS["pain_management"] == "Pain management"
    assert labels.label("not_a_code") == "not_a_code"
