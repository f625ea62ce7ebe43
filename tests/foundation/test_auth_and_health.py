from __future__ import annotations

import hashlib

import pytest
from litestar import Controller, Request, get
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.common.access.auth import KeyError_, Principal, Role, create_api_key, require_roles
from services.common.access.models import ApiKey
from services.common.http.web import ServiceSpec, build_app
from services.common.settings import Settings
from services.intake.app import create_app as create_intake_app
from services.referral.app import create_app as create_referral_app
from tests.conftest import MakeKey, auth


@get("/v1/probe/clinical", guards=[require_roles(Role.clinician)], sync_to_thread=False)
def clinical_probe(request: Request) -> dict[str, str]:
    user = request.user
    assert isinstance(user, Principal)
    return {"name": user.name, "role": user.role.value}


@pytest.fixture
async def guarded_client(settings: Settings, engine: AsyncEngine):
    spec = ServiceSpec(name="probe", title="probe", description="", route_handlers=[clinical_probe])
    async with AsyncTestClient(build_app(spec, settings, engine, run_workers=False)) as client:
        yield client


async def test_created_key_is_stored_only_as_its_hash(engine: AsyncEngine) -> None:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        key, row = await create_api_key(session, role="front_desk", name="reception-hash")
        await session.commit()
        stored = (await session.execute(select(ApiKey).where(ApiKey.id == row.id))).scalar_one()
        dump = (await session.execute(text("SELECT row_to_json(k)::text FROM access.api_keys k"))).scalars()
    assert key.startswith("clk_") and len(key) > 40
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert all(key not in line for line in dump)


@pytest.mark.parametrize(
    ("role", "destination", "message"),
    [
        ("specialist", None, "needs --destination"),
        ("front_desk", "urgent_care", "only specialist keys"),
        ("janitor", None, "role must be one of"),
        ("specialist", "mars", "destination must be one of"),
    ],
)
async def test_nonsense_key_requests_are_refused(
    engine: AsyncEngine, role: str, destination: str | None, message: str
) -> None:
    async with AsyncSession(engine) as session:
        with pytest.raises(KeyError_, match=message):
            await create_api_key(session, role=role, name="x", destination=destination)


async def test_no_key_is_401_problem(guarded_client: AsyncTestClient) -> None:
    response = await guarded_client.get("/v1/probe/clinical")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 401


class GuardedController(Controller):
    path = "/v1/probe/admin"
    guards = [require_roles(Role.admin)]

    @get("/", sync_to_thread=False)
    def read(self) -> dict[str, str]:
        return {"ok": "yes"}


async def test_options_on_a_guarded_controller_is_401_not_a_server_error(
    settings: Settings, engine: AsyncEngine
) -> None:
    """The auth middleware skips OPTIONS; a controller's guard then finds no user and must
    answer 401, not crash."""
    spec = ServiceSpec(name="probe", title="probe", description="", route_handlers=[GuardedController])
    async with AsyncTestClient(build_app(spec, settings, engine, run_workers=False)) as client:
        response = await client.options("/v1/probe/admin")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_unknown_key_is_401(guarded_client: AsyncTestClient) -> None:
    response = await guarded_client.get("/v1/probe/clinical", headers=auth("clk_not-a-real-key"))
    assert response.status_code == 401


async def test_wrong_role_is_403(guarded_client: AsyncTestClient, make_key: MakeKey) -> None:
    response = await guarded_client.get("/v1/probe/clinical", headers=auth(await make_key("front_desk")))
    assert response.status_code == 403
    assert "clinician" in response.json()["detail"]


async def test_right_role_and_admin_pass(guarded_client: AsyncTestClient, make_key: MakeKey) -> None:
    for role in ("clinician", "admin"):
        response = await guarded_client.get("/v1/probe/clinical", headers=auth(await make_key(role)))
        assert response.status_code == 200
        assert response.json()["role"] == role


async def test_revoked_key_is_401(
    guarded_client: AsyncTestClient, make_key: MakeKey, engine: AsyncEngine
) -> None:
    from services.common.access.auth import revoke_api_key

    key = await make_key("clinician", name="to-revoke")
    async with AsyncSession(engine) as session:
        assert await revoke_api_key(session, "to-revoke") == 1
        await session.commit()
    response = await guarded_client.get("/v1/probe/clinical", headers=auth(key))
    assert response.status_code == 401


@pytest.mark.parametrize("factory", [create_intake_app, create_referral_app])
async def test_health_schema_and_metrics_are_open(settings: Settings, engine: AsyncEngine, factory) -> None:
    async with AsyncTestClient(factory(settings, engine)) as client:
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")
        schema = await client.get("/schema/openapi.json")
        metrics = await client.get("/metrics")
    assert live.status_code == 200
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "migrations": "ok", "workers": "ok"}
    assert schema.status_code == 200 and schema.json()["openapi"].startswith("3.1")
    assert metrics.status_code == 200


async def test_ready_is_503_when_migrations_are_behind(settings: Settings, engine: AsyncEngine) -> None:
    app = create_intake_app(settings, engine)
    app.state["clinic_heads"] = {**app.state["clinic_heads"], "access": frozenset({"a_future_revision"})}
    async with AsyncTestClient(app) as client:
        ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert "access" in ready.json()["checks"]["migrations"]


async def test_a_revoked_key_stops_working_within_the_cache_time(
    settings: Settings, engine: AsyncEngine, make_key: MakeKey
) -> None:
    """Keys are looked up at most once per `CLINIC_API_KEY_CACHE_SECONDS` per process: a key
    revoked meanwhile is refused as soon as its cached lookup runs out, never later."""
    from services.common.access.auth import KeyCache, revoke_api_key

    now = [1000.0]
    spec = ServiceSpec(name="probe", title="probe", description="", route_handlers=[clinical_probe])
    app = build_app(spec, settings, engine, run_workers=False)
    app.state["clinic_key_cache"] = KeyCache(ttl_seconds=5.0, clock=lambda: now[0])
    key = await make_key("clinician", name="cached-then-revoked")
    async with AsyncTestClient(app) as client:
        assert (await client.get("/v1/probe/clinical", headers=auth(key))).status_code == 200
        async with AsyncSession(engine) as session:
            assert await revoke_api_key(session, "cached-then-revoked") == 1
            await session.commit()
        now[0] += 5.0
        assert (await client.get("/v1/probe/clinical", headers=auth(key))).status_code == 401


async def test_a_key_created_after_an_unknown_key_was_tried_works_at_once(
    guarded_client: AsyncTestClient, make_key: MakeKey
) -> None:
    """Refusals are cached too, but by the key's digest: a new key is a new digest."""
    assert (await guarded_client.get("/v1/probe/clinical", headers=auth("clk_unknown"))).status_code == 401
    key = await make_key("clinician")
    assert (await guarded_client.get("/v1/probe/clinical", headers=auth(key))).status_code == 200


def test_the_role_guard_is_a_coroutine() -> None:
    """Litestar runs a plain-function guard in a worker thread on every request."""
    import inspect

    assert inspect.iscoroutinefunction(require_roles(Role.clinician))
