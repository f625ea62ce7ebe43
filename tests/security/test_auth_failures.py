"""A refused key is logged with its status and reason (it used to be logged as 500), counted in
the metrics, and throttled per client address and per key prefix (429 with Retry-After)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.access.throttle import FailureWindow
from services.common.settings import Settings
from services.intake.app import create_app
from tests.conftest import MakeKey, auth


@pytest.fixture
async def client(settings: Settings, engine: AsyncEngine) -> Any:
    limited = dataclasses.replace(settings, auth_failure_limit=5)
    async with AsyncTestClient(create_app(limited, engine)) as test_client:
        yield test_client


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0  # not counted yet


async def test_a_refused_key_is_logged_as_401_with_a_reason_and_counted(
    client: AsyncTestClient[Any], caplog: pytest.LogCaptureFixture
) -> None:
    labels = {"status": "401", "reason": "bad_key"}
    before = metric((await client.get("/metrics")).text, "clinic_auth_failures_total", **labels)
    with caplog.at_level(logging.INFO, logger="clinic.request"):
        response = await client.get("/v1/intakes", headers=auth("clk_not-a-real-key"))
    assert response.status_code == 401
    [logged] = [
        r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "request_finished"
    ]
    assert logged["status"] == 401 and "not valid" in logged["reason"]
    after = metric((await client.get("/metrics")).text, "clinic_auth_failures_total", **labels)
    assert after == before + 1


async def test_repeated_refusals_are_throttled_with_retry_after(
    client: AsyncTestClient[Any], make_key: MakeKey
) -> None:
    statuses = [
        (await client.get("/v1/intakes", headers=auth(f"clk_guess{i:04d}xxxxxxxx"))).status_code
        for i in range(8)
    ]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429] * 3
    throttled = await client.get("/v1/intakes", headers=auth("clk_another"))
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    assert throttled.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/health/live")).status_code == 200  # public routes are not throttled


def test_the_window_counts_per_bucket_and_forgets_after_it() -> None:
    now = [0.0]
    window = FailureWindow(limit=2, window=60.0, clock=lambda: now[0])
    window.fail("key:clk_abc")
    window.fail("key:clk_abc")
    assert window.retry_after("key:clk_abc") == 60
    assert window.retry_after("key:clk_xyz") is None
    now[0] = 30.0
    assert window.retry_after("key:clk_abc") == 30
    now[0] = 60.5
    assert window.retry_after("key:clk_abc") is None
