"""Fault 3: the queue's LISTEN connections killed by the server (`pg_terminate_backend` on their
application_name), as a restart of a connection pooler or an operator would."""

from __future__ import annotations

import time

import pytest

from services.common.queue import LISTENER_NAME
from tests.reliability.harness import Load, System, report, settle_and_check, sql, wait_for

pytestmark = pytest.mark.reliability

_LISTENERS = (
    "SELECT pid, application_name FROM pg_stat_activity "
    "WHERE datname = current_database() AND application_name LIKE $1"
)


def test_killed_listeners_are_logged_events_still_flow_and_the_listeners_come_back(system: System) -> None:
    dsn = system.dsn()
    before = sql(dsn, _LISTENERS, f"{LISTENER_NAME}%")
    names = sorted(r["application_name"] for r in before)
    assert len(names) == 3, names  # referral.triage, referral.webhooks, intake.referral_mirror

    killed = sql(
        dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE $1",
        f"{LISTENER_NAME}%",
    )
    assert len(killed) == 3
    killed_at = time.monotonic()
    with Load(system, threads=2, limit=20) as load:
        wait_for(lambda: len(load.answers) >= 20, within=60)
    acked = load.acknowledged()
    assert len(acked) >= 20, load.by_status()
    result = settle_and_check(dsn, acked, within=60)

    back = wait_for(lambda: len(sql(dsn, _LISTENERS, f"{LISTENER_NAME}%")) == 3, within=30)
    assert back, "the listeners did not reconnect"
    back_after = time.monotonic() - killed_at
    lost = system.events("queue_listener_lost")
    assert len(lost) >= 3 and all(e["level"] == "warning" for e in lost)
    assert len(system.events("queue_listener_reconnected")) >= 3
    assert system.tracebacks() == []
    system.stop_cleanly()
    report(
        "LISTEN connections terminated",
        **result.figures(),
        settled_s=round(result.settle_seconds, 1),
        listeners_back_within_s=round(back_after, 1),
        poll_interval_s=1,
    )
