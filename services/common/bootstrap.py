"""Wiring shared by the two services' factories and the CLI: settings, logging, engine."""

from __future__ import annotations

from collections.abc import Callable

from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.clock import Clock
from services.common.db.engine import create_engine, resolve_database_url
from services.common.http.web import ServiceSpec, build_app
from services.common.logging import configure_logging
from services.common.settings import Settings, get_settings


def prepare(
    settings: Settings | None = None, engine: AsyncEngine | None = None
) -> tuple[Settings, AsyncEngine]:
    """Settings (read once), logging, and an engine on the configured or embedded database."""
    settings = settings or get_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    if engine is None:
        engine = create_engine(resolve_database_url(settings), settings)
    return settings, engine


def create_service_app(
    spec_factory: Callable[[Settings, Clock | None], ServiceSpec],
    settings: Settings | None = None,
    engine: AsyncEngine | None = None,
    *,
    run_workers: bool = False,
    clock: Clock | None = None,
) -> Litestar:
    """A service's app from its `service_spec(settings, clock)`: each service's `create_app` is
    this with its own spec (`clock` None: the system's)."""
    settings, engine = prepare(settings, engine)
    return build_app(spec_factory(settings, clock), settings, engine, run_workers=run_workers)
