"""`clinic`: the operator's one entry point (up, serve, worker, migrate, keys, events, demo)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from services.common.settings import Settings, get_settings
from services.common.vocabulary import SpecialistDestination

SERVICES = ("intake", "referral")


def _service_module(name: str) -> Any:
    if name == "intake":
        from services.intake import app as intake_app

        return intake_app
    from services.referral import app as referral_app

    return referral_app


def _port(settings: Settings, name: str) -> int:
    return settings.intake_port if name == "intake" else settings.referral_port


def _run_async(fn: Callable[[Settings], Any]) -> Any:
    from services.common.logging import configure_logging

    settings = get_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    return asyncio.run(fn(settings))


async def _with_engine(settings: Settings, body: Callable[[Any], Any]) -> Any:
    from services.common.db import create_engine, resolve_database_url

    engine = create_engine(resolve_database_url(settings), null_pool=True)
    try:
        return await body(engine)
    finally:
        await engine.dispose()


# -- migrate ---------------------------------------------------------------------------------


def cmd_migrate(_: argparse.Namespace) -> int:
    from services.common.migrate import upgrade_all

    async def run(settings: Settings) -> None:
        await _with_engine(settings, upgrade_all)

    _run_async(run)
    print("migrations applied", file=sys.stderr)
    return 0


# -- keys ------------------------------------------------------------------------------------


def cmd_keys_create(args: argparse.Namespace) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession

    from services.common.auth import KeyError_, create_api_key

    async def body(engine: Any) -> str:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            key, _row = await create_api_key(
                session, role=args.role, name=args.name, destination=args.destination
            )
            await session.commit()
            return key

    try:
        key = _run_async(lambda s: _with_engine(s, body))
    except KeyError_ as exc:
        print(f"clinic keys create: {exc}", file=sys.stderr)
        return 2
    print(key)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession

    from services.common.auth import revoke_api_key

    async def body(engine: Any) -> int:
        async with AsyncSession(engine) as session:
            count = await revoke_api_key(session, args.name)
            await session.commit()
            return count

    count = _run_async(lambda s: _with_engine(s, body))
    print(f"revoked {count} key(s) named {args.name!r}", file=sys.stderr)
    return 0 if count else 1


# -- serve / worker --------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    app = _service_module(args.service).create_app(settings, run_workers=args.with_workers)
    port = args.port or _port(settings, args.service)
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
    app = _service_module(args.service).create_app(settings, run_workers=True)

    from services.common.health import HEARTBEAT_SECONDS, heartbeat, heartbeat_file

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


def cmd_up(_: argparse.Namespace) -> int:
    from services.common.db import asyncpg_url
    from services.common.embedded import start_embedded, stop_embedded
    from services.common.logging import configure_logging

    settings = get_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    stopping = False

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    env = dict(os.environ)
    embedded = settings.database_url is None
    if embedded:
        env["CLINIC_DATABASE_URL"] = asyncpg_url(start_embedded(settings.data_dir))
    # Local trials send webhooks to receivers on this machine: allow loopback unless configured.
    env.setdefault("CLINIC_WEBHOOK_ALLOW_HOSTS", "localhost,127.0.0.1,::1")
    procs: list[subprocess.Popen[bytes]] = []
    code = 0
    try:
        subprocess.run([sys.executable, "-m", "services.cli", "migrate"], env=env, check=True)
        for name in SERVICES:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "services.cli", "serve", name, "--with-workers"],
                    env=env,
                    preexec_fn=_child_preexec,
                )
            )
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
        urls = {name: f"http://{host}:{_port(settings, name)}" for name in SERVICES}
        deadline = time.monotonic() + 60
        for name, url in urls.items():
            if not wait_until_ready([url], deadline, procs):
                print(f"clinic up: the {name} service did not become ready", file=sys.stderr)
                return 1
        where = f"embedded PostgreSQL in {settings.data_dir.resolve()}" if embedded else "CLINIC_DATABASE_URL"
        print(
            "\nclinic is up\n"
            f"  intake    {urls['intake']}   (API docs: {urls['intake']}/schema)\n"
            f"  referral  {urls['referral']}   (API docs: {urls['referral']}/schema)\n"
            f"  database  {where}\n"
            f"  webhooks  loopback/private targets allowed: {env['CLINIC_WEBHOOK_ALLOW_HOSTS'] or 'none'}\n"
            "Make a key:  uv run clinic keys create --role front_desk --name reception\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        while not stopping:
            if any(p.poll() is not None for p in procs):
                print("clinic up: a service exited; stopping the rest", file=sys.stderr)
                code = 1
                break
            time.sleep(0.2)
    except subprocess.CalledProcessError:
        code = 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if embedded:
            stop_embedded(settings.data_dir)
    return code


# -- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinic", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="the whole system: database, migrations, both services")
    up.set_defaults(fn=cmd_up)

    serve = sub.add_parser("serve", help="run one service's HTTP API")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--with-workers", action="store_true", help="also run its background consumers")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(fn=cmd_serve)

    worker = sub.add_parser("worker", help="run one service's background consumers only")
    worker.add_argument("service", choices=SERVICES)
    worker.add_argument("--heartbeat-file", help="where to record health (default: in the temp dir)")
    worker.add_argument("--heartbeat-seconds", type=float, help="seconds between heartbeats (default 10)")
    worker.set_defaults(fn=cmd_worker)

    migrate = sub.add_parser("migrate", help="apply every schema's migrations")
    migrate.set_defaults(fn=cmd_migrate)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key; prints the key alone on stdout")
    create.add_argument("--role", required=True, choices=["front_desk", "specialist", "clinician", "admin"])
    create.add_argument("--destination", choices=[d.value for d in SpecialistDestination])
    create.add_argument("--name", required=True)
    create.set_defaults(fn=cmd_keys_create)
    revoke = keys.add_parser("revoke", help="revoke every key with this name")
    revoke.add_argument("--name", required=True)
    revoke.set_defaults(fn=cmd_keys_revoke)

    _extend_parser(sub)
    return parser


def _extend_parser(sub: Any) -> None:
    """Commands owned by other modules (events, demo) register themselves here."""
    for module_name in ("services.common.queue_cli", "services.common.health", "services.referral.demo"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.fn(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
