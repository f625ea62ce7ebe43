"""Fault 2: the embedded PostgreSQL restarted under load (`pg_ctl restart -m immediate`: every
connection cut, crash recovery, then the server is back)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import httpx
import pytest

from tests.reliability.harness import CLIENT_TIMEOUT, HEAVY, Load, clinic, report, settle_and_check

pytestmark = pytest.mark.reliability


@dataclass
class Probe:
    at: float
    status: int | None
    body: dict


class ReadinessWatch:
    """Polls both services' /health/ready every 50 ms and keeps every answer."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.seen: dict[str, list[Probe]] = {u: [] for u in urls}
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.halt.is_set():
                for url in self.urls:
                    try:
                        resp = client.get(f"{url}/health/ready")
                        self.seen[url].append(Probe(time.monotonic(), resp.status_code, resp.json()))
                    except httpx.HTTPError:
                        self.seen[url].append(Probe(time.monotonic(), None, {}))
                time.sleep(0.05)

    def __enter__(self) -> ReadinessWatch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.halt.set()
        self.thread.join(timeout=10)


def test_an_immediate_database_restart_gives_retryable_503s_and_loses_nothing() -> None:
    with clinic() as system:
        system.start()
        urls = [system.intake, system.referral]
        with ReadinessWatch(urls) as watch, Load(system, threads=4, pause=0.05) as load:
            time.sleep(3)
            restarted_at = time.monotonic()
            server_back = 0.0
            for _ in range(3 if HEAVY else 1):
                system.pg_ctl("restart", "-m", "immediate", "-l", str(system.pgdata() / "log"))
                # pg_ctl -w returns once the server accepts connections (the first restart counts)
                server_back = server_back or time.monotonic()
                time.sleep(1)
            time.sleep(4)
            # Every service back to ready, listeners included, before the load stops.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(
                watch.seen[u] and watch.seen[u][-1].status == 200 for u in urls
            ):
                time.sleep(0.2)
        answers = list(load.answers)
        acked = load.acknowledged()

        # Clients: a 201, or a 503 problem with Retry-After; never a 500, never a hang.
        other = [a for a in answers if a.status not in (201, 503)]
        assert other == [], other[:5]
        refused = [a for a in answers if a.status == 503]
        assert all(a.retry_after and a.content_type == "application/problem+json" for a in refused)
        assert max(a.elapsed for a in answers) < CLIENT_TIMEOUT

        # Readiness: ready, then not ready during the outage, then ready again with every
        # queue listener connected (the ready answer lists them).
        recovery = {}
        for url in urls:
            probes = [p for p in watch.seen[url] if p.at >= restarted_at - 0.2]
            statuses = [p.status for p in probes]
            assert 503 in statuses, f"{url} never reported not-ready: {statuses[:40]}"
            first_down = statuses.index(503)
            back = next(p for p in probes[first_down:] if p.status == 200)
            assert back.body["checks"]["listeners"] == "ok"
            recovery[url.rsplit(":", 1)[1]] = {
                "not_ready_for_s": round(back.at - probes[first_down].at, 2),
                "ready_after_server_back_s": round(back.at - server_back, 2),
            }

        # The log: a warning per lost listener and per refused request, no traceback.
        assert system.events("queue_listener_lost"), "no listener loss was logged"
        assert len(system.events("queue_listener_reconnected")) >= 3
        assert system.tracebacks() == []
        warnings_503 = system.events("database_unavailable")
        assert all(w["level"] == "warning" for w in warnings_503)

        result = settle_and_check(system.dsn(), acked)
        system.stop_cleanly()
    report(
        "PostgreSQL restart -m immediate under load",
        answers=load.by_status(),
        **result.figures(),
        slowest_answer_s=round(max(a.elapsed for a in answers), 2),
        readiness=recovery,
        settled_s=round(result.settle_seconds, 1),
    )
