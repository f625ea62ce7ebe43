"""The repository stands alone and its documents say what the code does.

- No tracked file points outside the repository (a clone has nothing beside it).
- `docs/triage-rules.md` is what the ruleset renders to today.
- `docs/api.md`'s events catalogue and webhook payloads match the event types in code.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import msgspec
import pytest

from services.common.contracts.events import CONSUMERS, PAYLOAD_TYPES
from services.referral.triage import rules_document
from services.referral.triage_markdown import REGENERATE, published_documents, render_rules_markdown
from services.referral.webhooks.consumer import THIN_FIELDS
from tests.api_guide import API_GUIDE, section, table_rows
from tests.conftest import REPO_ROOT, run_clinic

# Built from parts so that this file does not match itself.
OUTSIDE_REFERENCES = ["../" + "shared", "shared/" + "design", "shared/" + "vignettes"]
RULES_PAGE = REPO_ROOT / "docs" / "triage-rules.md"


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [REPO_ROOT / name for name in listed.split("\0") if name]


def test_no_tracked_file_refers_outside_the_repository() -> None:
    files = tracked_files()
    assert len(files) > 50, "git ls-files found too little: is this a checkout?"
    hits = []
    for path in files:
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            hits += [f"{path.relative_to(REPO_ROOT)}:{number}: {p}" for p in OUTSIDE_REFERENCES if p in line]
    assert hits == [], "a clone has nothing beside it:\n" + "\n".join(hits)


def test_the_committed_rules_page_is_what_the_ruleset_says() -> None:
    assert RULES_PAGE.read_text() == render_rules_markdown(published_documents()), (
        f"docs/triage-rules.md is out of date with services/referral/triage.py; regenerate it: {REGENERATE}"
    )


def test_the_rules_page_lists_each_ruleset_its_thresholds_and_rules_in_order() -> None:
    v1 = rules_document("v1")
    other = msgspec.structs.replace(v1, ruleset_version="v9", rules=list(reversed(v1.rules)))
    page = render_rules_markdown([v1, other])
    first, second = page.split("## Ruleset v1")[1].split("## Ruleset v9")
    for part, document in ((first, v1), (second, other)):
        codes = re.findall(r"^\| `([A-Z0-9-]+)` \|", part, flags=re.MULTILINE)
        assert codes == [rule.code for rule in document.rules]
        assert f"| `chronic_weeks` | {v1.thresholds.chronic_weeks} | Pain is chronic" in part
    assert "## How the rules combine" in page


def test_the_published_page_shows_v2_first_with_what_changed_from_v1() -> None:
    page = RULES_PAGE.read_text()
    assert page.index("## Ruleset v2") < page.index("## Ruleset v1")
    changes = page.split("### What changed from v1")[1].split("## Ruleset v1")[0]
    for change in rules_document("v2").changes:
        assert f"- {change.change} `{change.code}`" in changes


def test_clinic_triage_rules_prints_the_page_and_the_json_document() -> None:
    def clinic(*args: str) -> str:
        result = run_clinic("triage", "rules", *args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert clinic("--format", "markdown") == RULES_PAGE.read_text()
    assert json.loads(clinic("--format", "json")) == msgspec.to_builtins(rules_document())


def test_the_events_catalogue_matches_the_event_types_in_code() -> None:
    rows = table_rows(section("Events catalogue"))
    assert set(rows) == set(PAYLOAD_TYPES), (
        "docs/api.md's events catalogue and services/common/contracts/events.py differ"
    )
    for event_type, payload in PAYLOAD_TYPES.items():
        fields, _published_by, consumed_by = rows[event_type]
        assert fields == set(payload.__struct_fields__), event_type
        assert consumed_by == {name for name, types in CONSUMERS.items() if event_type in types}, event_type


def test_the_webhook_payloads_match_what_is_sent() -> None:
    rows = table_rows(section("Outgoing webhooks"))
    assert set(rows) == {payload.TYPE for payload in THIN_FIELDS}
    for payload, fields in THIN_FIELDS.items():
        assert rows[payload.TYPE] == [set(fields)], payload.TYPE


@pytest.mark.parametrize("link", ["triage-rules.md"])
def test_the_guide_links_resolve(link: str) -> None:
    assert f"({link})" in API_GUIDE.read_text()
    assert (API_GUIDE.parent / link).is_file()
