"""The shared clinical vignettes (`../shared/vignettes/public.json`), with relative dates resolved.

Used by the tests and by `clinic demo`.

The file writes dates as `-Nd` (N days before the day the test runs) so that the cases never age:
a procedure "2 weeks ago" stays two weeks ago. `load_public_vignettes(today)` turns them into ISO
dates relative to the `today` the caller pins, so unit tests (pure triage) and HTTP tests (the
server's clock) can use the same cases.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Expectation", "Vignette", "load_public_vignettes", "public_vignettes_path"]

_RELATIVE_DATE = re.compile(r"^-(\d+)d$")


@dataclass(frozen=True, slots=True)
class Expectation:
    destination: str
    priority: str
    reason_codes: tuple[str, ...]
    """Each must appear among the referral's reasons; others may appear too."""


@dataclass(frozen=True, slots=True)
class Vignette:
    id: str
    description: str
    expect: Expectation
    body: dict[str, Any]
    """The intake body, JSON-ready (dates as ISO strings), to POST or to decode."""


def public_vignettes_path() -> Path:
    """`CLINIC_VIGNETTES` when set (a file, or a directory holding `public.json`), else the
    project's sibling `shared/vignettes/public.json`."""
    configured = os.environ.get("CLINIC_VIGNETTES")
    if configured:
        path = Path(configured)
        return path / "public.json" if path.is_dir() else path
    return Path(__file__).resolve().parents[2].parent / "shared" / "vignettes" / "public.json"


def _resolve_dates(value: Any, today: datetime.date) -> Any:
    if isinstance(value, str):
        match = _RELATIVE_DATE.match(value)
        if match:
            return (today - datetime.timedelta(days=int(match.group(1)))).isoformat()
        return value
    if isinstance(value, list):
        return [_resolve_dates(item, today) for item in value]
    if isinstance(value, dict):
        return {key: _resolve_dates(item, today) for key, item in value.items()}
    return value


def load_public_vignettes(today: datetime.date) -> list[Vignette]:
    raw = json.loads(public_vignettes_path().read_text(encoding="utf-8"))
    vignettes = []
    for case in raw["vignettes"]:
        expect = case["expect"]
        vignettes.append(
            Vignette(
                id=case["id"],
                description=case["description"],
                expect=Expectation(
                    destination=expect["destination"],
                    priority=expect["priority"],
                    reason_codes=tuple(expect["reason_codes"]),
                ),
                body=_resolve_dates(case["intake"], today),
            )
        )
    return vignettes
