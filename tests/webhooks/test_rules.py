"""The sender's pure rules: which targets are refused, when to retry, how `Retry-After` reads."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest

from services.referral.webhooks.posting import parse_retry_after
from services.referral.webhooks.ssrf import TargetError, TargetGuard, is_internal
from services.referral.webhooks.tuning import SenderTuning


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "ff02::1",
        # IPv6 addresses that embed an internal IPv4 one: 6to4, NAT64, IPv4-compatible.
        "2002:a9fe:a9fe::1",
        "2002:7f00:1::1",
        "2002:0a00:0001::",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::7f00:1",
        "::7f00:1",
        "::a9fe:a9fe",
    ],
)
def test_internal_addresses_are_refused(address: str) -> None:
    assert is_internal(ipaddress.ip_address(address))
    assert not TargetGuard().address_allowed("example.org", ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "2002:808:808::1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not is_internal(ipaddress.ip_address(address))


@pytest.mark.parametrize("url", ["http://[2002:a9fe:a9fe::1]/", "http://[2002:7f00:1::1]:8080/hook"])
async def test_6to4_urls_wrapping_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(TargetError):
        await TargetGuard().check(url)


def test_allow_list_names_hosts_addresses_and_networks() -> None:
    guard = TargetGuard.from_allow_list(["Receiver.Local.", "127.0.0.1", "10.20.0.0/16", "::1"])
    assert guard.address_allowed("receiver.local", ipaddress.ip_address("10.9.9.9"))
    assert guard.address_allowed("x", ipaddress.ip_address("127.0.0.1"))
    assert guard.address_allowed("x", ipaddress.ip_address("10.20.3.4"))
    assert guard.address_allowed("x", ipaddress.ip_address("::1"))
    assert not guard.address_allowed("x", ipaddress.ip_address("10.21.0.1"))
    assert not guard.address_allowed("x", ipaddress.ip_address("127.0.0.2"))


async def test_a_host_resolving_to_loopback_is_refused_unless_named() -> None:
    with pytest.raises(TargetError, match="localhost resolves to"):
        await TargetGuard().check("http://localhost:8080/hook")
    await TargetGuard.from_allow_list(["localhost"]).check("http://localhost:8080/hook")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x", "http://", "javascript:alert(1)"])
def test_only_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(TargetError):
        TargetGuard().check_url(url)


def test_retry_schedule_then_dead() -> None:
    tuning = SenderTuning(retry_schedule=(5, 300, 1800))
    assert tuning.max_attempts == 4
    assert 4 <= (tuning.retry_delay(1) or 0) <= 6
    assert 240 <= (tuning.retry_delay(2) or 0) <= 360
    assert 1440 <= (tuning.retry_delay(3) or 0) <= 2160
    assert tuning.retry_delay(4) is None


def test_default_schedule_is_the_published_one() -> None:
    assert SenderTuning().retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)


def test_retry_after_delays_but_never_hastens_a_retry() -> None:
    tuning = SenderTuning(retry_schedule=(300,))
    assert (tuning.retry_delay(1, retry_after=7200) or 0) == 7200
    assert 240 <= (tuning.retry_delay(1, retry_after=1) or 0) <= 360
    assert (tuning.retry_delay(1, retry_after=10**9) or 0) == 24 * 3600


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Sat, 28 Nov 2026 12:10:00 GMT", now) == 600
    assert parse_retry_after("Sat, 28 Nov 2026 11:00:00 GMT", now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
