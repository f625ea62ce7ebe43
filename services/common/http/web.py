"""What both Litestar apps share: database plugin, auth, problems, logging, health, metrics,
OpenAPI. Each service's `create_app` adds its own controllers and background workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeAlias

import structlog
from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from litestar import Litestar, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.middleware import DefineMiddleware
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.types import ASGIApp, ControllerRouterHandler
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.common.access.audit_api import AuditController
from services.common.access.audit_middleware import AuditMiddleware
from services.common.access.audit_retention import run_audit_retention
from services.common.access.auth import ApiKeyMiddleware, KeyCache
from services.common.access.throttle import AuthThrottleMiddleware, FailureWindow
from services.common.db.migrate import current_versions, expected_heads
from services.common.http.api_docs import assets_router, render_plugins
from services.common.http.deps import DEPENDENCIES
from services.common.http.fast_lane import LaneFactory
from services.common.http.input_limits import InputLimitsMiddleware
from services.common.http.openapi import OutgoingWebhook, finish_document
from services.common.http.pages.audit import MrnLookup, audit_pages
from services.common.http.pages.dead_letters import dead_letter_pages
from services.common.http.pages.web import common_page_handlers, template_config
from services.common.http.problems import EXCEPTION_HANDLERS, problem_details_plugin
from services.common.http.security_headers import add_security_headers
from services.common.logging import RequestLogMiddleware
from services.common.queue import Consumer, QueueTuning, QueueWorker, run_retention
from services.common.queue.admin import dead_letter_controller
from services.common.queue.metrics import run_depth_refresher
from services.common.settings import Settings

log = structlog.get_logger(__name__)

PUBLIC_PATHS = ["^/health/", "^/schema", "^/metrics"]

#: The request's database session, provided by the SQLAlchemy plugin (commit explicitly).
DbSession: TypeAlias = NamedDependency[AsyncSession]

#: A background loop a service runs inside its lifespan: it gets the app state and a stop event.
Worker = Callable[[State], AbstractAsyncContextManager[None]]


@dataclass
class ServiceSpec:
    name: str
    title: str
    description: str
    route_handlers: Sequence[ControllerRouterHandler]
    workers: Sequence[Worker] = field(default_factory=list)
    #: Queue consumers this service owns; run as workers, listed in its dead-letter views.
    consumers: Sequence[Consumer] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    #: Calls this service makes to subscribers, documented as OpenAPI 3.1 `webhooks`.
    webhooks: Sequence[OutgoingWebhook] = ()
    #: The service's own page templates, beside the shared layout (services/common/http/pages).
    template_dirs: Sequence[Path] = ()
    #: The patients this service knows by an MRN, for the access audit page's search by MRN.
    patients_by_mrn: MrnLookup | None = None
    #: Routes whose common case is answered ahead of routing (`services/common/http/fast_lane.py`).
    fast_lanes: Sequence[LaneFactory] = ()


#: The health probes: public (no key asked, none documented), under the `health` tag.
PROBE: dict[str, Any] = {"tags": ["health"], "opt": {"exclude_from_auth": True}, "security": [{}]}


@get("/health/live", operation_id="liveness", summary="Is the process up?", sync_to_thread=False, **PROBE)
def live() -> dict[str, str]:
    """The process is up (no dependency is checked)."""
    return {"status": "ok"}


@get("/health/ready", operation_id="readiness", summary="Is the service ready to serve?", **PROBE)
async def ready(state: State) -> Response[dict[str, Any]]:
    """Database reachable, migrations at head, background workers running, queue listeners
    connected: 200 with each check `ok`, else 503 naming the check that is not."""
    checks: dict[str, Any] = {}
    engine: AsyncEngine = state["clinic_engine"]
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
        found = await current_versions(engine)
        heads = state["clinic_heads"]
        behind = sorted(h for h, v in heads.items() if found.get(h) != v)
        checks["migrations"] = "ok" if not behind else f"not at head: {', '.join(behind)}"
    except Exception as exc:  # readiness reports, never raises
        checks["database"] = f"unreachable: {type(exc).__name__}"
    expected = state.get("clinic_workers_expected", 0)
    running = sum(1 for t in state.get("clinic_worker_tasks", []) if not t.done())
    checks["workers"] = "ok" if running >= expected else f"{running}/{expected} running"
    # Queue consumers' LISTEN connections: without them events wait for the polling fallback.
    deaf = [w.consumer.name for w in state.get("clinic_queue_workers", []) if not w.listening]
    if state.get("clinic_queue_workers"):
        checks["listeners"] = "ok" if not deaf else f"not listening: {', '.join(deaf)}"
    ok = all(v == "ok" for v in checks.values())
    return Response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


class MetricsController(PrometheusController):
    path = "/metrics"
    include_in_schema = False
    opt = {"exclude_from_auth": True}


def build_app(
    spec: ServiceSpec,
    settings: Settings,
    engine: AsyncEngine,
    *,
    run_workers: bool,
) -> Litestar:
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    queue_workers: list[QueueWorker] = []
    workers = [*_queue_workers(spec, settings, engine, queue_workers), *spec.workers] if run_workers else []

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state["clinic_worker_tasks"] = []
        async with AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker(app.state))
            log.info("service_started", service=spec.name, workers=len(workers))
            yield
            log.info("service_stopping", service=spec.name)

    sqlalchemy = SQLAlchemyAsyncConfig(
        engine_instance=engine,
        # No file objects and no query cache here: their listeners ran on every flush and commit.
        session_config=AsyncSessionConfig(expire_on_commit=False, info={"enable_cache_listener": False}),
        enable_file_object_listener=False,
        session_dependency_key="db_session",
    )
    prometheus = PrometheusConfig(
        app_name=spec.name,
        prefix="clinic_http",
        group_path=True,
        exclude=["^/health/", "^/metrics"],
    )
    # The layers every request passes, fast lanes' too (the lanes check input, throttle and key
    # with the same functions as the other three, and leave the app any request they refuse).
    every_request: list[Any] = [RequestLogMiddleware, AuditMiddleware(), prometheus.middleware]
    app = Litestar(
        route_handlers=[
            live,
            ready,
            MetricsController,
            assets_router(),
            dead_letter_controller(c.name for c in spec.consumers),
            AuditController,
            *common_page_handlers(),
            dead_letter_pages(c.name for c in spec.consumers),
            audit_pages(spec.patients_by_mrn),
            *spec.route_handlers,
        ],
        template_config=template_config(spec.template_dirs),
        plugins=[SQLAlchemyPlugin(config=sqlalchemy), problem_details_plugin()],
        middleware=[
            *every_request,
            InputLimitsMiddleware,
            AuthThrottleMiddleware(),
            DefineMiddleware(ApiKeyMiddleware, exclude=PUBLIC_PATHS),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[add_security_headers],
        dependencies=DEPENDENCIES,
        request_max_body_size=settings.max_body_bytes,
        lifespan=[lifespan],
        state=State(
            {
                "clinic_settings": settings,
                "clinic_service": spec.name,
                "clinic_auth_failures": FailureWindow(settings.auth_failure_limit, 60.0),
                "clinic_engine": engine,
                "clinic_sessionmaker": sessionmaker,
                "clinic_session_scope_key": sqlalchemy.session_scope_key,
                "clinic_key_cache": KeyCache(settings.api_key_cache_seconds),
                "clinic_heads": expected_heads(),
                "clinic_workers_expected": len(workers),
                "clinic_queue_workers": queue_workers,
                **spec.state,
            }
        ),
        openapi_config=OpenAPIConfig(
            title=spec.title,
            version="1.0.0",
            description=spec.description,
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(
                        type="http", scheme="bearer", description="`clinic keys create` prints a key."
                    )
                }
            ),
            security=[{"apiKey": []}],
            use_handler_docstrings=True,
            render_plugins=render_plugins(),
        ),
        logging_config=None,
        debug=False,
    )
    finish_document(app.openapi_schema, spec.webhooks)

    def layered(inner: ASGIApp) -> ASGIApp:
        for layer in reversed(every_request):
            inner = layer(inner)
        return inner

    for lane in spec.fast_lanes:
        app.asgi_handler = lane(app, app.asgi_handler, layered)
    return app


def _queue_workers(
    spec: ServiceSpec, settings: Settings, engine: AsyncEngine, created: list[QueueWorker]
) -> list[Worker]:
    database_url = engine.url.render_as_string(hide_password=False)
    tuning = QueueTuning.from_settings(settings)
    workers: list[Worker] = []
    for consumer in spec.consumers:
        queue_worker = QueueWorker(engine, database_url, consumer, tuning)
        created.append(queue_worker)  # readiness looks at their LISTEN connections

        def start(state: State, w: QueueWorker = queue_worker) -> AbstractAsyncContextManager[None]:
            return background_loop(state, f"queue:{w.consumer.name}", w.run)

        workers.append(start)
    names = [c.name for c in spec.consumers]
    depth = partial(run_depth_refresher, engine, names, max(1.0, settings.queue_poll_seconds * 5))
    retention = partial(run_retention, engine, settings.queue_retention_hours)
    workers.append(lambda state: background_loop(state, "queue:depth", depth))
    workers.append(lambda state: background_loop(state, "queue:retention", retention))
    audit_retention = partial(run_audit_retention, engine, settings.audit_retention_days)
    workers.append(lambda state: background_loop(state, "audit:retention", audit_retention))
    return workers


def sessionmaker_from(state: State) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = state["clinic_sessionmaker"]
    return maker


@asynccontextmanager
async def background_loop(
    state: State,
    name: str,
    loop: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
    *,
    grace: float = 10.0,
) -> AsyncIterator[None]:
    """Run `loop(stop)` as a task for the life of the app; on exit signal stop, wait, then cancel.

    The task is registered in the app state so `/health/ready` can tell a dead worker.
    """
    stop = asyncio.Event()
    task = asyncio.create_task(loop(stop), name=name)
    state["clinic_worker_tasks"].append(task)
    try:
        yield
    finally:
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        elif not task.cancelled() and task.exception() is not None:
            log.error("worker_failed", worker=name, error=repr(task.exception()))
