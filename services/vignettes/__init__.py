"""The clinic's public vignettes: clinical cases with the routing a clinician signed off.

They ship inside the package (`public-v1.json`, `public-v2.json`, one file per ruleset), so the
tests and `clinic demo` work from a clone and from an installed wheel alike.

Dates in the files are relative, so the cases never age: `-Nd` / `+Nd` are N days before / after
the `today` the caller pins; `-Ny` is the same day N years earlier (29 February becomes 28
February); `-Ny+Nd` / `-Ny-Nd` apply the years first, then the days. `load_vignettes(today)` turns
them into ISO dates, so pure triage tests and HTTP tests read the same cases.

`CLINIC_VIGNETTES` names another file (or a folder holding `public-<ruleset>.json`): a reviewer's
held-out cases run through the same tests. A file serves the ruleset its `ruleset_version` names
(`v1` when it names none).
"""

from __future__ import annotations

import datetime
import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["Expectation", "Vignette", "load_vignettes", "resolve_date", "vignettes_source"]

_RELATIVE_DATE = re.compile(r"^(?:-(?P<years>\d+)y)?(?:(?P<sign>[+-])(?P<days>\d+)d)?$")


@dataclass(frozen=True, slots=True)
class Expectation:
    destination: str
    priority: str
    reason_codes: tuple[str, ...]
    """Each must appear among the referral's reasons; others may appear too. In v2 files the
    first is the deciding reason."""


@dataclass(frozen=True, slots=True)
class Vignette:
    id: str
    description: str
    expect: Expectation
    body: dict[str, Any]
    """The intake body, JSON-ready (dates as ISO strings), to POST or to decode."""


def _override(ruleset: str) -> Path | None:
    configured = os.environ.get("CLINIC_VIGNETTES")
    if not configured:
        return None
    path = Path(configured)
    if path.is_dir():
        candidate = path / f"public-{ruleset}.json"
        return candidate if candidate.is_file() else None
    raw = json.loads(path.read_text(encoding="utf-8"))
    return path if raw.get("ruleset_version", "v1") == ruleset else None


def vignettes_source(ruleset: str = "v2") -> str:
    """Where the cases for `ruleset` are read from: the override's path, or the packaged file."""
    override = _override(ruleset)
    return str(override) if override else f"services/vignettes/public-{ruleset}.json (packaged)"


def _read(ruleset: str) -> dict[str, Any]:
    override = _override(ruleset)
    if override is not None:
        text = override.read_text(encoding="utf-8")
    else:
        text = resources.files(__package__).joinpath(f"public-{ruleset}.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _years_before(day: datetime.date, years: int) -> datetime.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year - years, day=28)


def resolve_date(text: str, today: datetime.date) -> str | None:
    """The ISO date a relative date stands for, or None when `text` is not one."""
    match = _RELATIVE_DATE.match(text)
    if not match or not (match["years"] or match["days"]):
        return None
    day = _years_before(today, int(match["years"])) if match["years"] else today
    if match["days"]:
        delta = datetime.timedelta(days=int(match["days"]))
        day = day + delta if match["sign"] == "+" else day - delta
    return day.isoformat()


def _resolve_dates(value: Any, today: datetime.date) -> Any:
    if isinstance(value, str):
        resolved = resolve_date(value, today)
        return value if resolved is None else resolved
    if isinstance(value, list):
        return [_resolve_dates(item, today) for item in value]
    if isinstance(value, dict):
        return {key: _resolve_dates(item, today) for key, item in value.items()}
    return value


def load_vignettes(today: datetime.date, ruleset: str = "v2") -> list[Vignette]:
    """The cases for `ruleset` with their dates made absolute against `today`."""
    vignettes = []
    for case in _read(ruleset)["vignettes"]:
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
