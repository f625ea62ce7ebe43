"""What a handler may ask for by name, provided at the edge (Litestar dependency injection).

A handler declares `settings: ClinicSettings`, `clock: ClinicClock`, `now: Now`, `caller: Caller`
or `service_name: ServiceName` and gets it; no handler reads the app state or the connection by
string key.
Each service adds providers for its domain services (`referrals`, say) built from these.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from services.common.access.auth import Principal, principal_of
from services.common.clock import Clock
from services.common.settings import Settings


def provide_settings(state: State) -> Settings:
    settings: Settings = state["clinic_settings"]
    return settings


def provide_clock(state: State) -> Clock:
    clock: Clock = state["clinic_clock"]
    return clock


def provide_service_name(state: State) -> str:
    service: str = state["clinic_service"]
    return service


def provide_now(clock: ClinicClock) -> datetime:
    """The request's moment, read once: every rule in the request sees the same time."""
    return clock.now()


def provide_caller(request: Request[Any, Any, Any]) -> Principal:
    """The caller of a guarded route (the guard has already refused anyone else)."""
    return principal_of(request)


ClinicSettings: TypeAlias = NamedDependency[Settings]
ClinicClock: TypeAlias = NamedDependency[Clock]
#: The request's moment.
Now: TypeAlias = NamedDependency[datetime]
#: Who is calling a guarded route.
Caller: TypeAlias = NamedDependency[Principal]

#: The service handling the request (`intake` or `referral`).
ServiceName: TypeAlias = NamedDependency[str]

#: The providers every app registers.
DEPENDENCIES: dict[str, Provide] = {
    "settings": Provide(provide_settings, sync_to_thread=False),
    "clock": Provide(provide_clock, sync_to_thread=False),
    "now": Provide(provide_now, sync_to_thread=False),
    "service_name": Provide(provide_service_name, sync_to_thread=False),
    "caller": Provide(provide_caller, sync_to_thread=False),
}
