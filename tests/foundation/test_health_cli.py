"""`clinic health`: what a container healthcheck runs, for an API replica and for a worker."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from litestar.datastructures import State

from services.common.db.engine import create_engine
from services.common.http.health import beat, read_heartbeat
from tests.conftest import clinic_env, run_clinic, start_clinic
from tests.e2e.test_vignettes_live import poll
from tests.foundation.test_clinic_up import free_port, wait_ready


def test_a_running_worker_is_healthy_and_a_stopped_one_is_not(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "intake.heartbeat"
    env = clinic_env(database_url)
    health = ("health", "worker", "intake", "--heartbeat-file", str(path))
    assert run_clinic(*health, env=env).returncode == 1  # nothing has started yet
    worker = ("worker", "intake", "--heartbeat-file", str(path), "--heartbeat-seconds", "0.5")
    proc = start_clinic(*worker, env=env)
    try:
        healthy = poll(lambda: (r := run_clinic(*health, env=env)).returncode == 0 and r, timeout=60)
        assert "ok" in healthy.stdout
        record = json.loads(path.read_text())
        assert record["pid"] == proc.pid
        assert record["checks"] == {"database": "ok", "migrations": "ok", "workers": "ok", "listeners": "ok"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    stopped = run_clinic(*health, env=env)
    assert stopped.returncode == 1
    assert "no heartbeat" in stopped.stderr


def test_a_stale_or_failing_heartbeat_is_unhealthy(tmp_path: Path) -> None:
    path = tmp_path / "w.heartbeat"
    path.write_text(json.dumps({"status": "ok", "checks": {"database": "ok"}}))
    assert read_heartbeat(path, max_age=30)[0]
    old = time.time() - 120
    os.utime(path, (old, old))
    ok, why = read_heartbeat(path, max_age=30)
    assert not ok
    assert "ago" in why
    result = run_clinic("health", "worker", "referral", "--heartbeat-file", str(path))
    assert result.returncode == 1
    path.write_text("{not json")
    assert not read_heartbeat(path, max_age=30)[0]


async def test_a_worker_that_cannot_reach_its_database_records_so(tmp_path: Path) -> None:
    path = tmp_path / "w.heartbeat"
    engine = create_engine(f"postgresql://clinic@127.0.0.1:{free_port()}/clinic", null_pool=True)
    try:
        assert not await beat(State({"clinic_engine": engine, "clinic_workers_expected": 0}), path)
    finally:
        await engine.dispose()
    ok, why = read_heartbeat(path, max_age=30)
    assert not ok
    assert "database" in why
    assert "unreachable" in why


def test_an_api_replica_is_healthy_while_it_is_ready(database_url: str) -> None:
    port = free_port()
    env = clinic_env(database_url)
    down = run_clinic("health", "serve", "intake", "--port", str(port), env=env)
    assert down.returncode == 1
    assert "unreachable" in down.stderr
    proc = start_clinic("serve", "intake", "--port", str(port), env=env)
    try:
        assert wait_ready(f"http://127.0.0.1:{port}/health/ready", time.monotonic() + 60) == 200
        up = run_clinic("health", "serve", "intake", "--port", str(port), env=env)
        assert up.returncode == 0, up.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
