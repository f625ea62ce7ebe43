"""Every public vignette end to end on a running system: `clinic up` as processes, real HTTP,
the real queue between the two services."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.common.db.engine import libpq_url
from services.vignettes import Vignette, load_vignettes
from tests.conftest import REPO_ROOT, clinic_output, run_clinic, start_clinic
from tests.foundation.test_clinic_up import free_port, wait_ready

pytestmark = pytest.mark.e2e
TODAY = dt.datetime.now(dt.UTC).date()


@dataclass(frozen=True)
class LiveSystem:
    intake: str
    referral: str
    env: dict[str, str]
    headers: dict[str, str]


@pytest.fixture(scope="module")
def live(database_url: str) -> Iterator[LiveSystem]:
    intake_port, referral_port = free_port(), free_port()
    env = {
        **os.environ,
        "CLINIC_DATABASE_URL": database_url,
        "CLINIC_INTAKE_PORT": str(intake_port),
        "CLINIC_REFERRAL_PORT": str(referral_port),
        "CLINIC_QUEUE_POLL_SECONDS": "1",
    }
    proc = start_clinic("up", env=env)
    try:
        deadline = time.monotonic() + 90
        intake, referral = f"http://127.0.0.1:{intake_port}", f"http://127.0.0.1:{referral_port}"
        assert wait_ready(f"{intake}/health/ready", deadline) == 200
        assert wait_ready(f"{referral}/health/ready", deadline) == 200
        key = clinic_output("keys", "create", "--role", "admin", "--name", "e2e", env=env)
        yield LiveSystem(intake, referral, env, {"Authorization": f"Bearer {key}"})
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def poll(fn, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = fn()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("not before the deadline")


@pytest.mark.parametrize("vignette", load_vignettes(TODAY), ids=lambda v: v.id)
def test_vignette_is_routed_as_published_and_the_intake_shows_it(
    live: LiveSystem, vignette: Vignette
) -> None:
    with httpx.Client(timeout=15, headers=live.headers) as client:
        created = client.post(f"{live.intake}/v1/intakes", json=vignette.body)
        assert created.status_code == 201, created.text
        intake_id = created.json()["id"]

        def referral() -> dict | None:
            items = client.get(f"{live.referral}/v1/referrals", params={"intake_id": intake_id}).json()[
                "items"
            ]
            return items[0] if items else None

        found = poll(referral)
        assert found["destination"] == vignette.expect.destination
        assert found["priority"] == vignette.expect.priority
        codes = [r["code"] for r in found["reasons"]]
        assert codes[0] == vignette.expect.reason_codes[0], codes
        assert set(vignette.expect.reason_codes) <= set(codes), codes
        assert found["ruleset_version"] == "v2"
        expected_status = "needs_review" if vignette.expect.destination == "clinician_review" else "requested"
        assert found["status"] == expected_status

        def intake_routed() -> dict | None:
            body = client.get(f"{live.intake}/v1/intakes/{intake_id}").json()
            return body if body["status"] == "routed" and body["referral"] else None

        intake = poll(intake_routed)
        assert intake["referral"]["id"] == found["id"]
        assert intake["referral"]["destination"] == vignette.expect.destination
        assert intake["referral"]["priority"] == vignette.expect.priority


async def test_clinic_demo_prints_every_vignette_as_expected_and_revokes_its_key(live: LiveSystem) -> None:
    result = run_clinic(
        "demo", "--intake-url", live.intake, "--referral-url", live.referral, env=live.env, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["case", "destination"]
    rows = {line.split()[0]: line for line in lines[2:]}
    vignettes = load_vignettes(TODAY)
    assert set(rows) == {v.id for v in vignettes}
    for vignette in vignettes:
        cells = rows[vignette.id].split()
        assert cells[1:3] == [vignette.expect.destination, vignette.expect.priority], rows[vignette.id]
        assert cells[-1] == "✓", rows[vignette.id]
    conn = await asyncpg.connect(libpq_url(live.env["CLINIC_DATABASE_URL"]))
    try:
        keys = await conn.fetch("SELECT name, revoked_at FROM access.api_keys WHERE name LIKE 'demo-%'")
    finally:
        await conn.close()
    assert keys, "the demo used no key of its own"
    assert all(k["revoked_at"] is not None for k in keys), f"the demo left its key usable: {keys}"


def test_clinic_demo_says_in_one_line_when_the_services_do_not_answer() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINIC_")}
    result = run_clinic("demo", "--intake-url", nowhere, "--referral-url", nowhere, env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"clinic demo: the services do not answer at {nowhere} and {nowhere} (is `clinic up` running there?)"
    ]


@pytest.fixture(scope="module")
def installed_clinic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as the Docker image has it: a wheel installed into a fresh virtualenv."""
    where = tmp_path_factory.mktemp("installed")
    subprocess.run(["uv", "build", "-q", "--wheel", "-o", str(where / "dist"), str(REPO_ROOT)], check=True)
    subprocess.run(["uv", "venv", "-q", str(where / "venv")], check=True)
    wheel = next((where / "dist").glob("clinic-*.whl"))
    python = where / "venv" / "bin" / "python"
    subprocess.run(["uv", "pip", "install", "-q", "--python", str(python), str(wheel)], check=True)
    return where / "venv" / "bin" / "clinic"


def test_the_installed_package_runs_the_demo(
    live: LiveSystem, installed_clinic: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in live.env.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    result = subprocess.run(
        [str(installed_clinic), "demo", "--intake-url", live.intake, "--referral-url", live.referral],
        cwd=tmp_path,  # far from the checkout: only the installed files can be found
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(result.stdout.splitlines()) == 2 + len(load_vignettes(TODAY))
