"""The shared clinical vignettes through `triage()`: the cases a clinician signed off."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from services.common.intake_body import check_intake, decode_intake
from services.referral.triage import triage
from tests.vignettes import Vignette, load_public_vignettes

TODAY = datetime.date.today()
VIGNETTES = load_public_vignettes(TODAY)


def test_the_public_vignettes_are_all_loaded() -> None:
    assert len(VIGNETTES) == 14
    assert len({v.id for v in VIGNETTES}) == 14


@pytest.mark.parametrize("vignette", VIGNETTES, ids=lambda v: v.id)
def test_vignette_is_routed_as_expected(vignette: Vignette) -> None:
    intake = decode_intake(json.dumps(vignette.body).encode())
    assert check_intake(intake, TODAY) == [], "the vignette must be a body the API accepts"
    outcome = triage(intake, TODAY)
    found = [reason.code for reason in outcome.reasons]
    assert (outcome.destination, outcome.priority) == (
        vignette.expect.destination,
        vignette.expect.priority,
    ), f"{vignette.id} ({vignette.description}): reasons {found}"
    missing = set(vignette.expect.reason_codes) - set(found)
    assert not missing, f"{vignette.id}: expected reasons {sorted(missing)} among {found}"


def test_relative_dates_become_iso_dates_before_today() -> None:
    today = datetime.date(2026, 5, 15)
    by_id = {v.id: v for v in load_public_vignettes(today)}
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
    (loaded,) = load_public_vignettes(datetime.date(2026, 1, 1))
    assert loaded.id == "X01"
    assert loaded.body == {"a": ["2025-12-31", {"b": "2026-01-01"}], "c": "-1 day", "d": "x-1d"}
