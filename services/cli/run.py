"""`clinic up|serve|worker|migrate`: the whole system on an embedded database, one service's API or
workers, and the migrations."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Any

from services.cli.common import READY_SECONDS, SERVICES, port_of, run_async, service_module, with_engine
from services.common.settings import Settings, get_settings

# -- migrate ---------------------------------------------------------------------------------


def _applied(count: int) -> str:
    return f"{count} migration(s) applied" if count else "no migration to apply"


def cmd_migrate(_: argparse.Namespace) -> int:
    from services.common.db.migrate import upgrade_all

    async def run(settings: Settings) -> int:
        count: int = await with_engine(settings, upgrade_all)
        return count

    count = run_async(run)
    print(f"clinic migrate: {_applied(count)}; every schema is at head", file=sys.stderr)
    return 0


# -- serve / worker --------------------------------------------------------------------------


def freeze_startup_objects() -> None:
    """Keep what start-up made (modules, the app, its routes and models: most of a service's
    objects, all living as long as the process) out of the garbage collector's full collections.

    Measured under `bench e2e` at 110 intakes/s (issue 17): the intake service ran a full
    collection every 10-20 s that held its event loop for 120-140 ms, every request and worker
    with it; those pauses were the intake → referral p99. A full collection now walks only what has been
    made since. Called once per serving process, never per app: tests build many apps in one
    process, and frozen objects are never collected."""
    gc.collect()
    gc.freeze()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    app = service_module(args.service).create_app(settings, run_workers=args.with_workers)
    freeze_startup_objects()
    port = args.port or port_of(settings, args.service)
    uvicorn.run(
        app,
        host=args.host or settings.host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Only the service's background consumers, no HTTP: for deployments with replicas."""
    settings = get_settings()
    app = service_module(args.service).create_app(settings, run_workers=True)
    freeze_startup_objects()

    from services.common.http.health import HEARTBEAT_SECONDS, heartbeat, heartbeat_file

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # The app's lifespan is what starts and stops the workers; nothing listens on a port, so
        # health is a heartbeat file that `clinic health worker <service>` reads.
        path = heartbeat_file(args.service, args.heartbeat_file)
        async with app.lifespan(), heartbeat(app.state, path, args.heartbeat_seconds or HEARTBEAT_SECONDS):
            await stop.wait()

    asyncio.run(run())
    return 0


# -- up --------------------------------------------------------------------------------------


def _child_preexec() -> None:
    """Children die with `clinic up`, even if it is killed with SIGKILL (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def is_ready(base_url: str) -> bool:
    """Whether the service at `base_url` answers its readiness check with a 200."""
    try:
        with urllib.request.urlopen(f"{base_url}/health/ready", timeout=2) as resp:  # noqa: S310 - loopback
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_until_ready(
    base_urls: Iterable[str], deadline: float, procs: Sequence[subprocess.Popen[bytes]] = ()
) -> bool:
    """Poll each service's readiness until all are ready (True), the `time.monotonic()` deadline
    passes or one of `procs` exits (False)."""
    waiting = list(base_urls)
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        waiting = [url for url in waiting if not is_ready(url)]
        if not waiting:
            return True
        time.sleep(0.25)
    return False


def _say(message: str) -> None:
    """What `clinic up` is doing, one line each on stderr (its logs go there too)."""
    print(f"clinic up: {message}", file=sys.stderr, flush=True)


def _port_problems(settings: Settings) -> list[str]:
    """Each port `clinic up` needs that it cannot have, named with its variable; checked before
    anything starts, so a second `clinic up` never mistakes the first one for itself."""
    wanted = {name: port_of(settings, name) for name in SERVICES}
    if len(set(wanted.values())) < len(wanted):
        return [f"CLINIC_INTAKE_PORT and CLINIC_REFERRAL_PORT are both {settings.intake_port}"]
    problems = []
    for name, port in wanted.items():
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind((settings.host, port))
            except OSError as exc:
                why = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                problems.append(f"port {port} on {settings.host} ({name}, CLINIC_{name.upper()}_PORT): {why}")
    return problems


async def _migrate_url(url: str) -> int:
    from services.common.db.engine import create_engine
    from services.common.db.migrate import upgrade_all

    engine = create_engine(url, null_pool=True)
    try:
        return await upgrade_all(engine)
    finally:
        await engine.dispose()


def _stop_children(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cmd_up(_: argparse.Namespace) -> int:
    from services.common.db.embedded import start_embedded, stop_embedded
    from services.common.db.engine import asyncpg_url
    from services.common.logging import configure_logging

    settings = get_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    problems = _port_problems(settings)
    if problems:
        print(f"clinic up: cannot start, {'; '.join(problems)}", file=sys.stderr)
        return 1
    stopping = False

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    env = dict(os.environ)
    if settings.secret_key is None:
        # Webhook signing secrets are sealed with a key: without CLINIC_SECRET_KEY, the one kept in
        # the data dir (made on the first start, reused on every next one).
        from services.common.access.secret_box import ensure_key_file, key_file

        try:
            env["CLINIC_SECRET_KEY"], made = ensure_key_file(settings.data_dir)
        except (OSError, ValueError) as exc:
            print(f"clinic up: cannot start, no secret key: {exc}", file=sys.stderr)
            return 1
        key_path = key_file(settings.data_dir.resolve())
        _say(f"{'made a new' if made else 'using the'} secret key in {key_path} (CLINIC_SECRET_KEY is unset)")
    embedded = settings.database_url is None
    if embedded:
        _say(f"starting the database (embedded PostgreSQL in {settings.data_dir.resolve()})")
        env["CLINIC_DATABASE_URL"] = asyncpg_url(start_embedded(settings.data_dir))
    else:
        _say("using the database at CLINIC_DATABASE_URL")
    # Local trials send webhooks to receivers on this machine: allow loopback unless configured.
    env.setdefault("CLINIC_WEBHOOK_ALLOW_HOSTS", "localhost,127.0.0.1,::1")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    urls = {name: f"http://{host}:{port_of(settings, name)}" for name in SERVICES}
    procs: list[subprocess.Popen[bytes]] = []
    code = 0
    try:
        _say("applying migrations")
        try:
            count = asyncio.run(_migrate_url(env["CLINIC_DATABASE_URL"]))
        except Exception as exc:  # the one line an operator needs, not a traceback
            _say(f"migrations failed: {type(exc).__name__}: {exc}".splitlines()[0])
            return 1
        _say(f"{_applied(count)}; every schema is at head")
        for name in SERVICES:
            _say(f"starting the {name} service on {urls[name]}")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "services.cli", "serve", name, "--with-workers"],
                    env=env,
                    preexec_fn=_child_preexec,
                )
            )
        deadline = time.monotonic() + READY_SECONDS
        for name, url in urls.items():
            if not wait_until_ready([url], deadline, procs):
                _say(f"the {name} service did not become ready")
                return 1
        where = f"embedded PostgreSQL in {settings.data_dir.resolve()}" if embedded else "CLINIC_DATABASE_URL"
        print(
            "\nclinic is up\n"
            f"  front desk  {urls['intake']}/   (staff sign in here)\n"
            f"  intake    {urls['intake']}   (API docs: {urls['intake']}/schema)\n"
            f"  referral  {urls['referral']}   (API docs: {urls['referral']}/schema)\n"
            f"  database  {where}\n"
            f"  webhooks  loopback/private targets allowed: {env['CLINIC_WEBHOOK_ALLOW_HOSTS'] or 'none'}\n"
            "Make a key:  uv run clinic keys create --role front_desk --name reception\n"
            "Make a staff account:  uv run clinic users create --role front_desk --name NAME --email E\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        while not stopping:
            if any(p.poll() is not None for p in procs):
                _say("a service exited; stopping the rest")
                code = 1
                break
            time.sleep(0.2)
    finally:
        parts = [f"the {name} service" for name, _ in zip(SERVICES, procs, strict=False)]
        _say("stopping " + ", ".join([*parts, *(["the embedded database"] if embedded else [])]))
        _stop_children(procs)
        if embedded:
            stop_embedded(settings.data_dir)
        _say("stopped")
    return code
