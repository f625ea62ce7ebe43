"""Scale-out on one machine: two replicas of each API and of each worker set, as separate processes
against one PostgreSQL, with a burst of intakes and specialist actions spread over the replicas.

What a clinic network would check before running replicas: one referral per intake, each event
applied once by each consumer, each webhook delivered once per endpoint, each follow-up emitted
once, concurrent actions on one referral from two replicas resolved by the row lock (one 200, one
409). The run also measures the same burst with one replica of everything and with two, and
prints both (figures, not assertions: speed is for bench/ and docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from services.common.contracts.events import CONSUMERS
from services.common.db.engine import libpq_url
from services.common.http.health import read_heartbeat
from services.vignettes import load_vignettes
from tests.conftest import MakeKey, auth, eventually, start_clinic
from tests.foundation.test_clinic_up import free_port, wait_ready
from tests.webhooks.support import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.scale]

BURST = 60  # intakes per burst, each with its own MRN
CONCURRENCY = 8  # requests in flight from the test client
DEADLINE = 180.0  # seconds any one wait may take before the test fails
WEBHOOK_TYPES = ["referral.created", "referral.status_changed", "referral.follow_up_due"]
TODAY = dt.datetime.now(dt.UTC).date()


@dataclass
class Fleet:
    """The processes of the test: each started with its own log file, all stopped at the end."""

    env: dict[str, str]
    logs: Path
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    heartbeats: list[Path] = field(default_factory=list)
    apis: dict[str, list[str]] = field(default_factory=lambda: {"intake": [], "referral": []})

    def _start(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}-{len(self.procs)}.log").open("wb")
        proc = start_clinic(*args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((name, proc))

    def api(self, service: str) -> None:
        port = free_port()
        self._start(f"{service}-api", "serve", service, "--port", str(port))
        self.apis[service].append(f"http://127.0.0.1:{port}")

    def worker(self, service: str) -> None:
        heartbeat = self.logs / f"{service}-worker-{len(self.procs)}.heartbeat"
        self._start(
            f"{service}-worker",
            "worker",
            service,
            "--heartbeat-file",
            str(heartbeat),
            "--heartbeat-seconds",
            "1",
        )
        self.heartbeats.append(heartbeat)

    def replica_of_everything(self) -> None:
        for service in ("intake", "referral"):
            self.api(service)
            self.worker(service)

    async def ready(self) -> None:
        deadline = time.monotonic() + DEADLINE
        for url in self.apis["intake"] + self.apis["referral"]:
            assert await asyncio.to_thread(wait_ready, f"{url}/health/ready", deadline) == 200, url
        for heartbeat in self.heartbeats:
            await eventually(lambda h=heartbeat: read_heartbeat(h, max_age=10)[0], within=DEADLINE)

    def cpu_seconds(self) -> float:
        """User and system CPU time the clinic processes have used so far (not PostgreSQL's)."""
        total = 0.0
        for _, proc in self.procs:
            times = psutil.Process(proc.pid).cpu_times()
            total += times.user + times.system
        return total

    def all_alive(self) -> list[str]:
        return [f"{name} exited {p.returncode}" for name, p in self.procs if p.poll() is not None]

    def stop(self) -> list[int | None]:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for _, proc in self.procs:
            try:
                codes.append(proc.wait(timeout=30))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes.append(None)
        return codes


@dataclass(frozen=True)
class Burst:
    intake_ids: list[str]
    api_seconds: float
    routed_seconds: float
    cpu_seconds: float

    def figures(self, label: str) -> str:
        n = len(self.intake_ids)
        return (
            f"{label}: {n} intakes accepted in {self.api_seconds:.2f} s ({n / self.api_seconds:.1f}/s), "
            f"all routed to a referral in {self.routed_seconds:.2f} s ({n / self.routed_seconds:.1f}/s), "
            f"clinic processes' CPU {1000 * self.cpu_seconds / n:.0f} ms per intake"
        )


async def burst(
    client: httpx.AsyncClient, db: asyncpg.Connection, fleet: Fleet, key: str, label: str
) -> Burst:
    """POST a burst of vignette intakes (unique MRNs) spread round robin over the intake APIs;
    time until all are accepted and until each has its referral."""
    apis = fleet.apis["intake"]
    vignettes = load_vignettes(TODAY)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def submit(i: int) -> str:
        body = copy.deepcopy(vignettes[i % len(vignettes)].body)
        body["patient"]["mrn"] = f"SCALE-{label}-{i:03d}-{uuid.uuid4().hex[:6]}"
        async with gate:
            response = await client.post(f"{apis[i % len(apis)]}/v1/intakes", json=body, headers=auth(key))
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    cpu = fleet.cpu_seconds()
    start = time.monotonic()
    ids = await asyncio.gather(*(submit(i) for i in range(BURST)))
    accepted = time.monotonic()

    async def all_routed() -> bool:
        found = await db.fetchval(
            "SELECT count(DISTINCT intake_id) FROM referral.referrals WHERE intake_id = ANY($1::uuid[])", ids
        )
        return bool(found == len(ids))

    await eventually(all_routed, within=DEADLINE)
    return Burst(list(ids), accepted - start, time.monotonic() - start, fleet.cpu_seconds() - cpu)


async def test_two_replicas_of_everything_do_each_thing_once(
    database_url: str, make_key: MakeKey, tmp_path: Path
) -> None:
    receiver = Receiver()
    receiver.thread.start()
    env = {
        **os.environ,
        "CLINIC_DATABASE_URL": database_url,
        "CLINIC_LOG_FORMAT": "json",
        "CLINIC_LOG_LEVEL": "warning",
        "CLINIC_QUEUE_POLL_SECONDS": "1",
        # The first follow-up falls due on the day of the procedure, so the schedulers of both
        # replicas race to emit it during the test.
        "CLINIC_FOLLOW_UP_OFFSETS_DAYS": "0,14",
        "CLINIC_FOLLOW_UP_POLL_SECONDS": "0.5",
        "CLINIC_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
    }
    fleet = Fleet(env, tmp_path)
    db = await asyncpg.connect(libpq_url(database_url))
    endpoint: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            front_desk = await make_key("front_desk")
            admin = await make_key("admin")
            specialists = {
                d: await make_key("specialist", destination=d)
                for d in ("urgent_care", "pain_management", "regenerative_medicine")
            }

            # One replica of everything, then the same burst with two.
            fleet.replica_of_everything()
            await fleet.ready()
            hook_url, route = receiver.route()
            created = await client.post(
                f"{fleet.apis['referral'][0]}/v1/webhooks/endpoints",
                json={"url": hook_url, "event_types": WEBHOOK_TYPES},
                headers=auth(admin),
            )
            assert created.status_code == 201, created.text
            endpoint = created.json()
            route.secrets = [endpoint["secret"]]
            one = await burst(client, db, fleet, front_desk, "one")
            fleet.replica_of_everything()
            await fleet.ready()
            two = await burst(client, db, fleet, front_desk, "two")
            print(f"\nscale-out ({os.cpu_count()} CPUs, {dt.datetime.now(dt.UTC):%Y-%m-%d}):")
            print("  " + one.figures("1 replica of each API and worker set "))
            print("  " + two.figures("2 replicas of each API and worker set"))
            intake_ids = one.intake_ids + two.intake_ids

            # One referral per intake.
            referrals = await db.fetch(
                "SELECT id, intake_id, destination, status FROM referral.referrals "
                "WHERE intake_id = ANY($1::uuid[])",
                intake_ids,
            )
            assert Counter(str(r["intake_id"]) for r in referrals) == Counter(intake_ids)

            # Specialists accept, each referral twice at once through both referral replicas.
            referral_apis = fleet.apis["referral"]
            to_accept = [r for r in referrals if r["status"] == "requested"]

            gate = asyncio.Semaphore(CONCURRENCY)

            async def act(referral: Any, action: str, replica: int, body: Any = None) -> int:
                key = specialists[referral["destination"]]
                url = f"{referral_apis[replica % len(referral_apis)]}/v1/referrals/{referral['id']}/{action}"
                async with gate:
                    response = await client.post(url, json=body, headers=auth(key))
                assert response.status_code in (200, 409), response.text
                return response.status_code

            async def accept_twice(referral: Any) -> list[int]:
                return sorted(await asyncio.gather(act(referral, "accept", 0), act(referral, "accept", 1)))

            outcomes = await asyncio.gather(*(accept_twice(r) for r in to_accept))
            assert outcomes == [[200, 409]] * len(to_accept)

            # Regenerative-medicine referrals go on to a procedure, which schedules follow-ups.
            regen = [r for r in to_accept if r["destination"] == "regenerative_medicine"]
            assert regen
            appointment = {"appointment_at": (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()}
            for i, referral in enumerate(regen):
                assert await act(referral, "schedule", i, appointment) == 200
                assert await act(referral, "complete", i + 1) == 200

            # Each follow-up scheduled once, and the one due today emitted once.
            regen_ids = [r["id"] for r in regen]
            follow_ups = await db.fetch(
                "SELECT referral_id, due_on FROM referral.follow_ups WHERE referral_id = ANY($1::uuid[])",
                regen_ids,
            )
            assert Counter(f["referral_id"] for f in follow_ups) == dict.fromkeys(regen_ids, 2)

            # Every webhook the endpoint should get, then the queues drained for these intakes.
            expected = Counter(
                {
                    "referral.created": len(referrals),
                    "referral.status_changed": len(to_accept) + 2 * len(regen),
                    "referral.follow_up_due": len(regen),
                }
            )
            ours = {str(i) for i in intake_ids}

            def got() -> Counter[str]:
                return Counter(
                    m.json()["type"]
                    for m in receiver.requests(hook_url)
                    if m.json()["data"]["intake_id"] in ours
                )

            # Wait for at least the expected count; a duplicate would overshoot, and is caught
            # once the queues are drained below.
            await eventually(lambda: all(got()[t] >= n for t, n in expected.items()), within=DEADLINE)

            async def drained() -> bool:
                pending = await db.fetchval(
                    "SELECT count(*) FROM queue.deliveries d JOIN queue.events e ON e.id = d.event_id "
                    "WHERE e.payload->>'intake_id' = ANY($1::text[])",
                    list(ours),
                )
                unsent = await db.fetchval(
                    "SELECT count(*) FROM referral.webhook_deliveries "
                    "WHERE endpoint_id = $1 AND succeeded_at IS NULL",
                    uuid.UUID(endpoint["id"]),
                )
                return bool(pending == 0 and unsent == 0)

            await eventually(drained, within=DEADLINE)
            assert got() == expected
            assert fleet.all_alive() == []

            # Each event applied once by each of its consumers (the inbox holds one row per
            # event and consumer; nothing left pending or dead).
            events = await db.fetch(
                "SELECT e.id, e.type, array_agg(i.consumer ORDER BY i.consumer) "
                "FILTER (WHERE i.consumer IS NOT NULL) AS consumers "
                "FROM queue.events e LEFT JOIN queue.inbox i ON i.event_id = e.id "
                "WHERE e.payload->>'intake_id' = ANY($1::text[]) GROUP BY e.id, e.type",
                list(ours),
            )
            # A consumer is owed only the types it wants (the webhook consumer: those an enabled
            # endpoint subscribes to; the endpoint was registered before the first burst).
            wanted = {
                (r["consumer"], r["event_type"])
                for r in await db.fetch("SELECT consumer, event_type FROM queue.subscriptions WHERE wanted")
            }
            for event in events:
                subscribed = sorted(
                    c
                    for c, types in CONSUMERS.items()
                    if event["type"] in types and (c, event["type"]) in wanted
                )
                assert event["consumers"] == subscribed, event
            by_type = Counter(e["type"] for e in events)
            assert by_type["intake.submitted"] == len(intake_ids)
            assert by_type["referral.created"] == len(intake_ids)
            assert by_type["referral.follow_up_due"] == len(regen)

            # The effects, once: the intake mirrors each referral in one row with its last status,
            # and each referral's history holds one acceptance.
            mirror = await db.fetch(
                "SELECT referral_id, status FROM intake.referral_mirror WHERE intake_id = ANY($1::uuid[])",
                intake_ids,
            )
            now_status = {
                r["id"]: r["status"]
                for r in await db.fetch(
                    "SELECT id, status FROM referral.referrals WHERE intake_id = ANY($1::uuid[])", intake_ids
                )
            }
            assert {m["referral_id"]: m["status"] for m in mirror} == now_status
            assert len(mirror) == len(now_status)
            accepted = await db.fetch(
                "SELECT referral_id, count(*) AS n FROM referral.referral_history "
                "WHERE status = 'accepted' AND referral_id = ANY($1::uuid[]) GROUP BY referral_id",
                [r["id"] for r in to_accept],
            )
            assert len(accepted) == len(to_accept)
            assert {a["n"] for a in accepted} == {1}

            # Each webhook delivered once per endpoint: as many distinct webhook-ids at the
            # receiver as messages, as deliveries recorded, every signature valid.
            messages = [m for m in receiver.requests(hook_url) if m.json()["data"]["intake_id"] in ours]
            webhook_ids = {m.headers["webhook-id"] for m in messages}
            assert len(webhook_ids) == len(messages) == sum(expected.values())
            recorded = await db.fetchval(
                "SELECT count(*) FROM referral.webhook_deliveries d JOIN queue.events e ON e.id = d.event_id "
                "WHERE d.endpoint_id = $1 AND e.payload->>'intake_id' = ANY($2::text[])",
                uuid.UUID(endpoint["id"]),
                list(ours),
            )
            assert recorded == len(messages)
            assert all(m.verified_by == [endpoint["secret"]] for m in messages)
            follow_up_ids = [
                m.json()["data"]["follow_up_id"] for m in messages if "follow_up_id" in m.json()["data"]
            ]
            assert len(set(follow_up_ids)) == len(follow_up_ids) == len(regen)
    finally:
        if endpoint:  # the database is shared: a leftover endpoint would be owed later tests' events
            async with httpx.AsyncClient(timeout=30) as client:
                with contextlib.suppress(httpx.HTTPError):  # a fleet already down keeps the first error
                    await client.delete(
                        f"{fleet.apis['referral'][0]}/v1/webhooks/endpoints/{endpoint['id']}",
                        headers=auth(admin),
                    )
        await db.close()
        codes = fleet.stop()
        receiver.server.shutdown()
    # Workers exit 0; uvicorn re-raises the SIGTERM it handled once it has shut down gracefully.
    assert set(codes) <= {0, -signal.SIGTERM}, "every process stops on SIGTERM, none needed a SIGKILL"
