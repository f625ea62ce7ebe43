"""A process's health for an orchestrator's healthcheck (asked by `clinic health serve|worker
<service>`, in services/cli/health.py).

An API replica answers `/health/ready`; `clinic health serve intake` asks it on loopback. A worker
replica (`clinic worker intake`) has no port: while it runs it writes its readiness (the checks of
`/health/ready`: database reachable, migrations at head, every background loop alive) to a
heartbeat file every few seconds, and `clinic health worker intake` exits 0 only when that file is
fresh and says ok. A hung event loop, a dead loop or an unreachable database all make it fail;
the file goes when the worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog
from litestar.datastructures import State

log = structlog.get_logger(__name__)

#: Seconds between two heartbeats of a worker.
HEARTBEAT_SECONDS = 10.0
#: A heartbeat older than this many intervals means the worker is not healthy.
STALE_AFTER_BEATS = 3


def heartbeat_file(service: str, given: str | None = None) -> Path:
    """Where a worker of `service` writes its heartbeat (one per container, so a fixed path)."""
    return Path(given) if given else Path(tempfile.gettempdir()) / f"clinic-worker-{service}.heartbeat"


async def beat(state: State, path: Path) -> bool:
    """Run the readiness checks once and record them; return whether all passed."""
    from services.common.http.web import ready

    # The very checks of the API's /health/ready handler, called directly (no HTTP here).
    response = await ready.fn(state)
    checks: dict[str, Any] = response.content["checks"]
    ok = all(value == "ok" for value in checks.values())
    record = {"status": "ok" if ok else "unavailable", "checks": checks, "pid": os.getpid()}
    await asyncio.to_thread(_write, path, json.dumps(record))
    return ok


def _write(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(text)
    partial.replace(path)  # atomic: a reader sees the old heartbeat or the new one


@contextlib.asynccontextmanager
async def heartbeat(state: State, path: Path, interval: float = HEARTBEAT_SECONDS) -> AsyncIterator[None]:
    """Beat every `interval` seconds while the block runs; remove the file after it."""
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            try:
                # A check that hangs (a database that never answers) writes nothing: the file ages.
                await asyncio.wait_for(beat(state, path), timeout=interval)
            except Exception as exc:
                log.warning("heartbeat_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    task = asyncio.create_task(loop(), name="heartbeat")
    try:
        yield
    finally:
        stop.set()
        await task
        await asyncio.to_thread(path.unlink, missing_ok=True)


def read_heartbeat(path: Path, max_age: float, now: float | None = None) -> tuple[bool, str]:
    """Whether the heartbeat at `path` is fresh and ok, and a line saying why not."""
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
        record: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return False, f"no heartbeat at {path} (worker not started, or stopped)"
    except (OSError, ValueError) as exc:
        return False, f"unreadable heartbeat at {path}: {type(exc).__name__}"
    if age > max_age:
        return False, f"last heartbeat {age:.0f} s ago (limit {max_age:.0f} s)"
    if record.get("status") != "ok":
        failing = {k: v for k, v in record.get("checks", {}).items() if v != "ok"}
        return False, f"unhealthy: {failing}"
    return True, f"ok, {age:.0f} s ago"
