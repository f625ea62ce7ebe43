"""`CLINIC_TIME_ZONE`: read and checked at start; the clinic's today and the latest date a form
may carry."""

from __future__ import annotations

import datetime as dt

import pytest

from services.common.clock import clinic_today
from services.common.contracts.intake_form import latest_today
from services.common.settings import SettingError, load_settings

AT = dt.datetime(2026, 5, 15, 11, 30, tzinfo=dt.UTC)


def test_the_clinic_time_zone_defaults_to_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLINIC_TIME_ZONE", raising=False)
    assert load_settings().clinic_time_zone == "UTC"
    monkeypatch.setenv("CLINIC_TIME_ZONE", "Europe/London")
    assert load_settings().clinic_time_zone == "Europe/London"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "+14:00", "../etc/passwd"])
def test_an_unknown_time_zone_is_refused_at_start(monkeypatch: pytest.MonkeyPatch, zone: str) -> None:
    monkeypatch.setenv("CLINIC_TIME_ZONE", zone)
    with pytest.raises(SettingError, match="CLINIC_TIME_ZONE"):
        load_settings()


@pytest.mark.parametrize(
    ("zone", "today"),
    [("UTC", "2026-05-15"), ("Pacific/Kiritimati", "2026-05-16"), ("Pacific/Pago_Pago", "2026-05-15")],
)
def test_the_clinics_today_is_its_local_date(zone: str, today: str) -> None:
    assert clinic_today(AT, zone).isoformat() == today


def test_a_form_may_carry_dates_up_to_one_day_after_the_clinics_today() -> None:
    early = dt.datetime(2026, 5, 15, 3, 0, tzinfo=dt.UTC)  # 14 May, 20:00 in Los Angeles
    assert latest_today(early, "America/Los_Angeles") == dt.date(2026, 5, 15)
    assert latest_today(early, "Pacific/Kiritimati") == dt.date(2026, 5, 16)
