"""The API guide (`docs/api.md`) read as data: what the clinic publishes to integrators, so tests
can hold the code (and what a subscriber receives) to it."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT

API_GUIDE = REPO_ROOT / "docs" / "api.md"


def section(title: str) -> str:
    text = API_GUIDE.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def table_rows(text: str) -> dict[str, list[set[str]]]:
    """`| \\`event\\` | cells... |` rows: the event, then each cell's backquoted names."""
    rows: dict[str, list[set[str]]] = {}
    for line in text.splitlines():
        match = re.match(r"^\| `([a-z_]+\.[a-z_]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [
                set(re.findall(r"`([a-z_.]+)`", cell)) for cell in match.group(2).split("|")
            ]
    return rows


def webhook_fields() -> dict[str, set[str]]:
    """Each outgoing webhook event's `data` fields, as the guide promises subscribers."""
    return {event: cells[0] for event, cells in table_rows(section("Outgoing webhooks")).items()}
