"""`clinic up` as a newcomer runs it: embedded PostgreSQL, both services, clean stop."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from services.common.db.migrate import pending_count
from tests.conftest import REPO_ROOT, embedded_data_dir, run_clinic, start_clinic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, deadline: float) -> int:
    last = 0
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return int(resp.status)
        except Exception:
            time.sleep(0.3)
    return last


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any(str(data_dir) in part for part in cmdline):
            found.append(proc)
    return found


@pytest.fixture
def data_dir():
    path = embedded_data_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.e2e
def test_clinic_up_serves_both_services_and_sigterm_leaves_no_process(data_dir: Path, tmp_path: Path) -> None:
    intake_port, referral_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CLINIC_DATABASE_URL", "CLINIC_SECRET_KEY")}
    env.update(
        CLINIC_DATA_DIR=str(data_dir),
        CLINIC_INTAKE_PORT=str(intake_port),
        CLINIC_REFERRAL_PORT=str(referral_port),
    )
    stderr = (tmp_path / "stderr").open("w+")
    proc = start_clinic("up", env=env, stdout=subprocess.PIPE, stderr=stderr)
    try:
        deadline = time.monotonic() + 180  # a bound, not a speed check: initdb on a busy machine
        assert wait_ready(f"http://127.0.0.1:{intake_port}/health/ready", deadline) == 200
        assert wait_ready(f"http://127.0.0.1:{referral_port}/health/ready", deadline) == 200
        family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert postgres_processes(data_dir), "the embedded server should be running"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert b"clinic is up" in out
    stderr.seek(0)
    said = [
        line.removeprefix("clinic up: ")
        for line in stderr.read().splitlines()
        if line.startswith("clinic up:")
    ]
    intake, referral = f"http://127.0.0.1:{intake_port}", f"http://127.0.0.1:{referral_port}"
    assert said == [
        f"made a new secret key in {data_dir / 'secret.key'} (CLINIC_SECRET_KEY is unset)",
        f"starting the database (embedded PostgreSQL in {data_dir})",
        "applying migrations",
        f"{pending_count({})} migration(s) applied; every schema is at head",
        f"starting the intake service on {intake}",
        f"starting the referral service on {referral}",
        "stopping the intake service, the referral service, the embedded database",
        "stopped",
    ]
    assert f"intake    {intake}".encode() in out and f"referral  {referral}".encode() in out
    time.sleep(0.5)
    left = [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert left == [], f"processes left behind: {left}"
    assert postgres_processes(data_dir) == [], "the embedded server outlived clinic up"
    # The key that seals webhook secrets stays in the data dir, for the owner only.
    assert (data_dir / "secret.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.e2e
def test_a_killed_owner_leaves_no_orphan_server_after_the_next_run(data_dir: Path) -> None:
    """A SIGKILLed owner leaves its pid in the owner list; the next command prunes it, so when
    that command exits it is the last owner and stops the server."""
    env = {k: v for k, v in os.environ.items() if k != "CLINIC_DATABASE_URL"}
    env["CLINIC_DATA_DIR"] = str(data_dir)
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path;"
            "from services.common.db.embedded import start_embedded;"
            "start_embedded(Path(sys.argv[1])); print('up', flush=True); time.sleep(120)",
            str(data_dir),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert owner.stdout is not None
    assert b"up\n" in iter(owner.stdout.readline, b""), "the owner never started the server"
    owner.kill()
    owner.wait()
    assert postgres_processes(data_dir), "a SIGKILLed owner leaves its server running"
    result = run_clinic("migrate", env=env)
    assert result.returncode == 0, result.stderr
    time.sleep(0.5)
    assert postgres_processes(data_dir) == [], "the orphaned server was not stopped"


def test_busy_ports_are_named_before_anything_starts(data_dir: Path) -> None:
    """A second `clinic up` (or anything else on its ports) is refused at once: nothing starts,
    and it never reports the other instance as its own."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "CLINIC_DATABASE_URL"}
        env.update(
            CLINIC_DATA_DIR=str(data_dir),
            CLINIC_INTAKE_PORT=str(free_port()),
            CLINIC_REFERRAL_PORT=str(busy),
        )
        result = run_clinic("up", env=env)
    assert result.returncode == 1
    assert "clinic is up" not in result.stdout
    assert result.stderr.splitlines() == [
        f"clinic up: cannot start, port {busy} on 127.0.0.1 (referral, CLINIC_REFERRAL_PORT): already in use"
    ]
    assert not (data_dir / "pgdata").exists(), "the database was started anyway"


def test_both_services_on_one_port_is_refused(data_dir: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "CLINIC_DATABASE_URL"}
    env.update(CLINIC_DATA_DIR=str(data_dir), CLINIC_INTAKE_PORT=str(port), CLINIC_REFERRAL_PORT=str(port))
    result = run_clinic("up", env=env)
    assert result.returncode == 1
    assert f"CLINIC_INTAKE_PORT and CLINIC_REFERRAL_PORT are both {port}" in result.stderr
    assert "clinic is up" not in result.stdout
