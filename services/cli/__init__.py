"""`clinic`: the operator's one entry point (up, serve, worker, migrate, keys, events, users, audit,
triage, demo). Each command group lives in a module of this package (or beside what it drives)
and is registered explicitly in `_extend_parser`."""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from services.common.contracts.vocabulary import SpecialistDestination
from services.common.settings import SettingError, Settings, get_settings

SERVICES = ("intake", "referral")
#: How long `clinic up` waits for each service to say it is ready (a first start on a busy machine
#: compiles and migrates for a while).
READY_SECONDS = 180


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
    from services.common.db.engine import create_engine, resolve_database_url

    engine = create_engine(resolve_database_url(settings), null_pool=True)
    try:
        return await body(engine)
    finally:
        await engine.dispose()


# -- migrate ---------------------------------------------------------------------------------


def _applied(count: int) -> str:
    return f"{count} migration(s) applied" if count else "no migration to apply"


def cmd_migrate(_: argparse.Namespace) -> int:
    from services.common.db.migrate import upgrade_all

    async def run(settings: Settings) -> int:
        count: int = await _with_engine(settings, upgrade_all)
        return count

    count = _run_async(run)
    print(f"clinic migrate: {_applied(count)}; every schema is at head", file=sys.stderr)
    return 0


# -- keys ------------------------------------------------------------------------------------

#: How long key commands wait for a database that `clinic up` (or `clinic migrate`) is preparing.
KEYS_WAIT_SECONDS = 60.0


class NotReady(Exception):
    """The database did not answer, or stayed behind its migrations, for KEYS_WAIT_SECONDS."""


async def _with_migrated_engine(settings: Settings, body: Callable[[Any], Any]) -> Any:
    """`body(engine)` once the database answers and its migrations are at head: right after
    `clinic up &` they may still be running. Waits, it never migrates (that is `clinic up`'s and
    `clinic migrate`'s job, under their lock)."""
    from services.common.db.migrate import wait_until_at_head

    def tell(why: str) -> None:
        print(
            f"clinic keys: waiting up to {KEYS_WAIT_SECONDS:.0f} s for the database: {why}",
            file=sys.stderr,
            flush=True,
        )

    async def waited(engine: Any) -> Any:
        try:
            await wait_until_at_head(engine, KEYS_WAIT_SECONDS, tell)
        except TimeoutError as exc:
            raise NotReady(str(exc)) from None
        return await body(engine)

    return await _with_engine(settings, waited)


def _not_ready(command: str, exc: NotReady) -> int:
    print(
        f"clinic {command}: gave up after {KEYS_WAIT_SECONDS:.0f} s, {exc}; "
        "start `clinic up` or run `clinic migrate`",
        file=sys.stderr,
    )
    return 1


def cmd_keys_create(args: argparse.Namespace) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession

    from services.common.access.audit import acting_as
    from services.common.access.auth import KeyError_, create_api_key

    async def body(engine: Any) -> str:
        with acting_as("cli", "createApiKey", resource=("api_keys", args.name)):
            async with AsyncSession(engine, expire_on_commit=False) as session:
                expires = None
                if args.expires_days is not None:
                    expires = datetime.now(UTC) + timedelta(days=args.expires_days)
                key, _row = await create_api_key(
                    session, role=args.role, name=args.name, destination=args.destination, expires_at=expires
                )
                await session.commit()
                return key

    try:
        key = _run_async(lambda s: _with_migrated_engine(s, body))
    except KeyError_ as exc:
        print(f"clinic keys create: {exc}", file=sys.stderr)
        return 2
    except NotReady as exc:
        return _not_ready("keys create", exc)
    print(key)
    return 0


def cmd_keys_list(_: argparse.Namespace) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession

    from services.common.access.auth import KeyListing, list_api_keys

    async def body(engine: Any) -> list[KeyListing]:
        async with AsyncSession(engine) as session:
            return await list_api_keys(session)

    try:
        keys: list[KeyListing] = _run_async(lambda s: _with_migrated_engine(s, body))
    except NotReady as exc:
        return _not_ready("keys list", exc)

    def when(value: datetime | None) -> str:
        return value.isoformat(timespec="seconds") if value else "-"

    print("name\trole\tdestination\tcreated\tlast_used\texpires\trevoked")
    for k in keys:
        cells = (k.name, k.role, k.destination or "-", when(k.created_at), when(k.last_used_at))
        print("\t".join((*cells, when(k.expires_at), when(k.revoked_at))))
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession

    from services.common.access.audit import acting_as
    from services.common.access.auth import revoke_api_key

    async def body(engine: Any) -> int:
        with acting_as("cli", "revokeApiKey", resource=("api_keys", args.name)):
            async with AsyncSession(engine) as session:
                count = await revoke_api_key(session, args.name)
                await session.commit()
                return count

    try:
        count = _run_async(lambda s: _with_migrated_engine(s, body))
    except NotReady as exc:
        return _not_ready("keys revoke", exc)
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
    wanted = {name: _port(settings, name) for name in SERVICES}
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
    urls = {name: f"http://{host}:{_port(settings, name)}" for name in SERVICES}
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
    create.add_argument("--expires-days", type=int, help="refused this many days from now (default: never)")
    create.set_defaults(fn=cmd_keys_create)
    listing = keys.add_parser("list", help="every key: name, role, destination, created, last used, expiry")
    listing.set_defaults(fn=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke every key with this name")
    revoke.add_argument("--name", required=True)
    revoke.set_defaults(fn=cmd_keys_revoke)

    _extend_parser(sub)
    return parser


def _extend_parser(sub: Any) -> None:
    """The commands kept beside this module or beside what they drive, each registered by name
    here: a missing one fails at once, it is never skipped."""
    from services.cli import audit, demo, events, health, secrets, staff
    from services.referral import triage_markdown

    for module in (events, audit, secrets, health, staff, demo, triage_markdown):
        module.register(sub)


def main(argv: list[str] | None = None) -> int:
    try:
        get_settings()  # the whole environment is checked before anything is loaded or started
    except SettingError as exc:
        print(f"clinic: {exc}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    result: int = args.fn(args)
    return result
