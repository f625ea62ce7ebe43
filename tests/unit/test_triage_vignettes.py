"""The clinical vignettes through the pure rulesets: the cases a clinician signed off. The v1
cases still run against ruleset v1 (kept as it ran); the v2 cases against the current ruleset,
whose first expected code must be the deciding (first) reason."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from services.common.contracts.intake_body import check_intake, decode_intake
from services.referral.triage import triage
from services.vignettes import Vignette, load_vignettes, resolve_date, vignettes_source

TODAY = datetime.date.today()
VIGNETTES = load_vignettes(TODAY, ruleset="v1")
VIGNETTES_V2 = load_vignettes(TODAY, ruleset="v2")


def test_the_public_vignettes_are_all_loaded() -> None:
    if "packaged" in vignettes_source("v1"):
        assert len(VIGNETTES) == 14
    if "packaged" in vignettes_source("v2"):
        assert len(VIGNETTES_V2) == 37
    assert len({v.id for v in VIGNETTES}) == len(VIGNETTES)
    assert len({v.id for v in VIGNETTES_V2}) == len(VIGNETTES_V2)


@pytest.mark.parametrize("vignette", VIGNETTES_V2, ids=lambda v: v.id)
def test_v2_vignette_is_routed_as_expected_and_decided_by_its_first_code(vignette: Vignette) -> None:
    intake = decode_intake(json.dumps(vignette.body).encode())
    assert check_intake(intake, TODAY) == [], "the vignette must be a body the API accepts"
    outcome = triage(intake, TODAY)
    found = [reason.code for reason in outcome.reasons]
    assert outcome.ruleset_version == "v2"
    assert (outcome.destination, outcome.priority) == (
        vignette.expect.destination,
        vignette.expect.priority,
    ), f"{vignette.id} ({vignette.description}): reasons {found}"
    assert found[0] == vignette.expect.reason_codes[0], f"{vignette.id}: decided by {found[0]}, {found}"
    missing = set(vignette.expect.reason_codes) - set(found)
    assert not missing, f"{vignette.id}: expected reasons {sorted(missing)} among {found}"


@pytest.mark.parametrize("vignette", VIGNETTES, ids=lambda v: v.id)
def test_v1_vignette_is_still_routed_as_expected_by_ruleset_v1(vignette: Vignette) -> None:
    intake = decode_intake(json.dumps(vignette.body).encode())
    assert check_intake(intake, TODAY) == [], "the vignette must be a body the API accepts"
    outcome = triage(intake, TODAY, version="v1")
    assert outcome.ruleset_version == "v1"
    found = [reason.code for reason in outcome.reasons]
    assert (outcome.destination, outcome.priority) == (
        vignette.expect.destination,
        vignette.expect.priority,
    ), f"{vignette.id} ({vignette.description}): reasons {found}"
    missing = set(vignette.expect.reason_codes) - set(found)
    assert not missing, f"{vignette.id}: expected reasons {sorted(missing)} among {found}"


def test_relative_dates_become_iso_dates_before_today() -> None:
    today = datetime.date(2026, 5, 15)
    by_id = {v.id: v for v in load_vignettes(today, ruleset="v1")}
    assert by_id["P07"].body["regenerative_procedure"]["performed_on"] == "2026-05-01"
    assert by_id["P08"].body["regenerative_procedure"]["performed_on"] == "2026-05-08"
    assert "-14d" not in json.dumps(by_id["P07"].body)


def test_clinic_vignettes_env_var_points_at_another_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = {
        "id": "X01",
        "description": "nested relative dates anywhere",
        "expect": {"destination": "pain_management", "priority": "routine", "reason_codes": []},
        "intake": {"a": ["-1d", {"b": "-0d"}], "c": "-1 day", "d": "x-1d"},
    }
    path = tmp_path / "cases.json"
    path.write_text(json.dumps({"vignettes": [case]}), encoding="utf-8")
    monkeypatch.setenv("CLINIC_VIGNETTES", str(path))
    (loaded,) = load_vignettes(datetime.date(2026, 1, 1), ruleset="v1")
    assert loaded.id == "X01"
    assert loaded.body == {"a": ["2025-12-31", {"b": "2026-01-01"}], "c": "-1 day", "d": "x-1d"}
    assert len(load_vignettes(datetime.date(2026, 1, 1), ruleset="v2")) > 1, "a v1 file leaves v2 packaged"


@pytest.mark.parametrize(
    ("written", "today", "meant"),
    [
        ("-3d", "2026-03-01", "2026-02-26"),
        ("+1d", "2026-12-31", "2027-01-01"),
        ("-40y", "2026-05-15", "1986-05-15"),
        ("-2y", "2024-02-29", "2022-02-28"),
        ("-40y+3d", "2026-05-15", "1986-05-18"),
        ("-40y-100d", "2026-05-15", "1986-02-04"),
        ("-0d", "2026-05-15", "2026-05-15"),
    ],
)
def test_relative_dates_of_every_form_resolve(written: str, today: str, meant: str) -> None:
    assert resolve_date(written, datetime.date.fromisoformat(today)) == meant


@pytest.mark.parametrize("text", ["1986-05-15", "-y", "-1w", "40y", "", "-1d-1y"])
def test_other_strings_are_not_relative_dates(text: str) -> None:
    assert resolve_date(text, datetime.date(2026, 5, 15)) is None
