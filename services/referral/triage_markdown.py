"""The triage rules as a document people read: `docs/triage-rules.md`, written from the ruleset.

`render_rules_markdown(documents)` is pure: the rules documents in (the same `RulesDocument`
that `GET /v1/triage/rules` serves), Markdown out. `clinic triage rules --format markdown`
prints it, and a test fails when the committed `docs/triage-rules.md` differs, so the page can
never drift from what `triage` runs.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import itertools
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

import msgspec

from services.referral.triage import CURRENT, RULESETS, RulesDocument, rules_document

REGENERATE = "uv run clinic triage rules --format markdown > docs/triage-rules.md"

HOW_THEY_COMBINE = """\
## How the rules combine (ruleset v2, the one in force)

1. Every rule is checked against the intake, and every rule that matches is kept as a *reason*.
   A clinician sees all of them, not just the one that decided: a patient with a red flag who
   would also be a candidate for regenerative medicine gets both reasons.
2. The most urgent reason decides the destination and priority. Urgency compares the priority
   first (stat, then urgent, then routine), then the destination (urgent care, then clinician
   review, then regenerative medicine and pain management alike). Among equally urgent reasons
   the first in the table wins, so the table is written in that order and the deciding reason is
   listed first. The referral's `due_by` follows from the priority (`CLINIC_SLA_*`).
3. Some rules step aside: the acute-pain rule ("usual care first") is dropped when an
   urgent-care or clinician-review rule matched, since it would contradict them; the default
   rule counts only when no other rule matched.
4. Dates are the clinic's (`CLINIC_TIME_ZONE`); a date up to one day after the clinic's today
   counts as today. An intake is triaged as of the time its version was submitted.
5. Rule texts quote the thresholds in force. This page shows the defaults; a clinic that changes
   a `CLINIC_TRIAGE_*` or `CLINIC_SLA_*` setting reads its own numbers at `GET /v1/triage/rules`,
   and can try an intake without storing anything at `POST /v1/triage/preview`.
6. A referral keeps the ruleset that made it: a referral made under v1 is explained by v1's rules
   (`GET /v1/triage/rules?version=v1`), which ordered reasons by destination before priority.
7. An amendment is triaged again: a more urgent result replaces the open referral at once;
   anything else keeps it and holds it for a clinician (reason `AMEND-HOLD`), so an amendment
   never lowers urgency by itself nor undoes a clinician's decision.
"""


def _field_notes(cls: type) -> dict[str, str]:
    """The one-line note written under each field of a thresholds class (its attribute docstring)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    notes: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for field, note in itertools.pairwise(body):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(note, ast.Expr)
            and isinstance(note.value, ast.Constant)
            and isinstance(note.value.value, str)
        ):
            notes[field.target.id] = " ".join(note.value.value.split())
    return notes


def _cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def _ruleset(document: RulesDocument) -> list[str]:
    thresholds: dict[str, Any] = msgspec.to_builtins(document.thresholds)
    notes = _field_notes(type(document.thresholds))
    threshold_rows = [f"| `{n}` | {_cell(v)} | {_cell(notes.get(n, ''))} |" for n, v in thresholds.items()]
    lines = [
        f"## Ruleset {document.ruleset_version}",
        "",
        "### Thresholds",
        "",
        "| threshold | default | meaning |",
        "|---|---|---|",
        *threshold_rows,
        "",
        "### Rules, in precedence order",
        "",
        "| code | destination | priority | rule | source |",
        "|---|---|---|---|---|",
        *(
            f"| `{r.code}` | {r.destination} | {r.priority} | {_cell(r.text)} | {_cell(r.source)} |"
            for r in document.rules
        ),
        "",
    ]
    if document.changes:
        lines += [f"### What changed from {document.changes_from}", ""]
        lines += [f"- {c.change} `{c.code}`: {_cell(c.summary)}" for c in document.changes]
        lines.append("")
    return lines


def render_rules_markdown(documents: Sequence[RulesDocument]) -> str:
    """The rules page for these rulesets, in the order given."""
    versions = ", ".join(d.ruleset_version for d in documents)
    lines = [
        "# Triage rules",
        "",
        f"<!-- Written by `{REGENERATE}` from the ruleset in",
        "     services/referral/triage/; do not edit by hand (a test compares them). -->",
        "",
        "Where an intake goes (urgent care, clinician review, regenerative medicine or pain",
        "management), with which priority, and why. The referral service runs exactly these",
        f"rules (ruleset {versions}); `GET /v1/triage/rules` serves the same content as JSON.",
        "",
        HOW_THEY_COMBINE,
    ]
    for document in documents:
        lines += _ruleset(document)
    return "\n".join(lines).rstrip("\n") + "\n"


def published_documents() -> list[RulesDocument]:
    """The rulesets `docs/triage-rules.md` describes, with default thresholds."""
    return [rules_document(version) for version in (CURRENT, *(v for v in RULESETS if v != CURRENT))]


def cmd_triage_rules(args: argparse.Namespace) -> int:
    if args.format == "json":
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(rules_document()), indent=2).decode() + "\n")
    else:
        sys.stdout.write(render_rules_markdown(published_documents()))
    return 0


def register(sub: Any) -> None:
    triage = sub.add_parser("triage", help="the triage ruleset").add_subparsers(
        dest="triage_command", required=True
    )
    rules = triage.add_parser("rules", help="print the rules (default thresholds) as Markdown or JSON")
    rules.add_argument("--format", choices=["markdown", "json"], default="markdown")
    rules.set_defaults(fn=cmd_triage_rules)
