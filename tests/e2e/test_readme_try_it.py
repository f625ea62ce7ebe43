"""The README's "Try it" block, run as written by bash in an empty folder, as a newcomer would
paste it: `clinic up &`, a key at once, an intake posted with it. Only the ports and the data
directory come from the environment (free ones, so the test runs beside anything else)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, embedded_data_dir
from tests.foundation.test_clinic_up import free_port

pytestmark = pytest.mark.e2e
MARKER = "<!-- try-it:"


def try_it_block() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    after = readme[readme.index(MARKER) :]
    match = re.search(r"```bash\n(.*?)```", after, flags=re.DOTALL)
    assert match is not None, "no bash block after the try-it marker"
    return match.group(1)


def test_the_readme_try_it_block_works_as_written(tmp_path: Path) -> None:
    block = try_it_block()
    assert block.startswith("uv run clinic up &\n")
    # Around the block, not inside it: curl also reports the status, and clinic up is stopped.
    script = (
        # curl's answer goes to its own file: the system's log lines share the terminal and may
        # land between the answer's body and its status line.
        "curl() { command curl -w '\\nHTTP_STATUS=%{http_code}\\n' \"$@\" > curl.out; }\n"
        + block
        + 'echo "KEY_PREFIX=${KEY:0:4}"\n'
        + 'kill -TERM $!\nwait $!\necho "UP_EXIT=$?"\n'
    )
    folder = tmp_path / "empty"
    folder.mkdir()
    data_dir = embedded_data_dir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINIC_")}
    env.update(
        UV_PROJECT=str(REPO_ROOT),
        CLINIC_DATA_DIR=str(data_dir),
        CLINIC_INTAKE_PORT=str(free_port()),
        CLINIC_REFERRAL_PORT=str(free_port()),
    )
    out_path = tmp_path / "out"
    with out_path.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", script],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
            raise
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    output = out_path.read_text()
    assert "Traceback" not in output, output
    answer = (folder / "curl.out").read_text()
    created = re.search(r"^(\{.*\})\nHTTP_STATUS=201$", answer, flags=re.MULTILINE)
    assert created is not None, answer + output
    assert json.loads(created.group(1))["id"], output
    assert "KEY_PREFIX=clk_" in output, output
    assert "clinic up: stopped" in output and "UP_EXIT=0" in output, output
    assert proc.returncode == 0, output
