"""Fault 5: webhook subscribers misbehaving (down then back, 500, hanging past the timeout,
410 Gone) next to a healthy one."""

from __future__ import annotations

import time

import pytest

from tests.foundation.test_clinic_up import free_port
from tests.reliability.harness import (
    Load,
    Receivers,
    clinic,
    deliveries,
    report,
    subscribe,
    wait_for,
)

pytestmark = pytest.mark.reliability

INTAKES = 6
# Four attempts, 1, 2 and 4 s apart (7 s from first to last); a 1 s timeout; two sends at a time
# per endpoint.
ENV = {
    "CLINIC_WEBHOOK_TIMEOUT_SECONDS": "1",
    "CLINIC_WEBHOOK_RETRY_SCHEDULE": "1,2,4",
    "CLINIC_WEBHOOK_CONCURRENCY_PER_ENDPOINT": "2",
}


def test_each_delivery_arrives_or_is_dead_lettered_and_the_healthy_endpoint_is_not_held_up(
    fresh_database: str,
) -> None:
    receivers = Receivers()
    down_port = free_port()
    late: Receivers | None = None
    with clinic(database_url=fresh_database, **ENV) as system:
        try:
            system.start()
            dsn = system.dsn()
            endpoints = {
                "healthy": subscribe(system, receivers.url("healthy", 200)),
                "failing": subscribe(system, receivers.url("failing", 500)),
                "hanging": subscribe(system, receivers.url("hanging", "hang")),
                "gone": subscribe(system, receivers.url("gone", 410)),
                "down": subscribe(system, f"http://127.0.0.1:{down_port}/down"),
            }
            with Load(system, threads=2, limit=INTAKES) as load:
                wait_for(lambda: len(load.answers) >= INTAKES, within=60)
            assert len(load.acknowledged()) >= INTAKES
            created = time.monotonic()

            def states(name: str) -> list[str]:
                return [d["status"] for d in deliveries(dsn, endpoints[name])]

            # The healthy endpoint has everything while the hanging one still has work owed.
            assert wait_for(lambda: states("healthy").count("succeeded") >= INTAKES, within=60)
            healthy_done = time.monotonic() - created
            assert "pending" in states("hanging"), "the healthy endpoint waited for the hanging one"

            # The subscriber that was down comes back once every delivery to it has failed at least
            # once (well inside the schedule's 7 s, however long the load took): all arrive.
            def each_failed_once() -> bool:
                rows = deliveries(dsn, endpoints["down"])
                return len(rows) >= INTAKES and all(d["attempts"] >= 1 for d in rows)

            assert wait_for(each_failed_once, within=60), states("down")
            assert "succeeded" not in states("down")
            late = Receivers(down_port)
            late.url("down", 200)

            def finished() -> bool:
                return all("pending" not in states(name) for name in endpoints)

            assert wait_for(finished, within=90), {n: states(n) for n in endpoints}
            finished_after = time.monotonic() - created

            by_name = {name: deliveries(dsn, endpoint) for name, endpoint in endpoints.items()}
            assert {d["status"] for d in by_name["healthy"]} == {"succeeded"}
            assert {d["status"] for d in by_name["down"]} == {"succeeded"}
            assert len(by_name["down"]) >= INTAKES
            # 500 and hanging: every attempt of the schedule made, then dead.
            for name in ("failing", "hanging"):
                assert {(d["status"], d["attempts"]) for d in by_name[name]} == {("dead", 4)}, name
            # 410: the endpoint is disabled at the first answer, all its deliveries dead at once.
            assert {d["status"] for d in by_name["gone"]} == {"dead"}
            assert len(receivers.of("gone")) <= 2
            gone = system.referral + f"/v1/webhooks/endpoints/{endpoints['gone']}"
            import httpx

            assert httpx.get(gone, headers=system.headers, timeout=30).json()["enabled"] is False
            # The healthy subscriber saw each delivery once.
            ids = [h.webhook_id for h in receivers.of("healthy")]
            assert len(ids) == len(set(ids)) == len(by_name["healthy"])
            healthy_delay = max(
                (d["succeeded_at"] - d["created_at"]).total_seconds() for d in by_name["healthy"]
            )
            assert system.stop() == 0
            assert system.left_behind() == []
        finally:
            receivers.close()
            if late is not None:
                late.close()
    report(
        "webhook receivers misbehaving",
        deliveries={name: len(rows) for name, rows in by_name.items()},
        healthy_all_delivered_after_s=round(healthy_done, 1),
        healthy_worst_delay_s=round(healthy_delay, 2),
        all_settled_after_s=round(finished_after, 1),
        hanging_requests=len(receivers.of("hanging")),
        gone_requests=len(receivers.of("gone")),
    )
