"""The deployment as an operations team would review it. No Docker engine runs here, so the compose
file and the proxy's configuration are checked for what they promise, and every command in them
is parsed by the real CLI parser."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from services.cli import build_parser
from tests.conftest import REPO_ROOT

COMPOSE = (REPO_ROOT / "docker-compose.yml").read_text()
CADDYFILE = (REPO_ROOT / "deploy" / "Caddyfile").read_text()
SERVICES: dict[str, Any] = yaml.safe_load(COMPOSE)["services"]
CLINIC = [name for name, s in SERVICES.items() if s.get("command", [None])[0] == "clinic"]
LONG_RUNNING = [name for name, s in SERVICES.items() if s.get("restart") != "no"]
SECRET_NAMES = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return dict(env) if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def test_the_system_is_a_database_a_migrator_services_workers_and_a_proxy() -> None:
    assert {"postgres", "migrate", "intake", "referral", "intake-worker", "referral-worker", "proxy"} <= set(
        SERVICES
    )
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["restart"] == "no"


def test_every_clinic_command_is_one_the_cli_accepts() -> None:
    parser = build_parser()
    for name in CLINIC:
        service = SERVICES[name]
        parser.parse_args(service["command"][1:])  # exits (fails the test) on an unknown command
        assert env_of(service)["CLINIC_DATABASE_URL"].startswith("postgresql://")
        assert env_of(service)["CLINIC_HOST"] == "0.0.0.0"
        assert service["command"][1] != "up", "one process per container, never `clinic up`"
        test = service.get("healthcheck", {}).get("test", [])
        if test[:2] == ["CMD", "clinic"]:
            parser.parse_args(test[2:])


def test_services_start_after_the_migrator_succeeds() -> None:
    for name in CLINIC:
        if name != "migrate":
            assert SERVICES[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_process_has_a_healthcheck(name: str) -> None:
    assert SERVICES[name]["healthcheck"]["test"]


def test_apis_report_readiness_and_workers_their_heartbeat() -> None:
    assert SERVICES["intake"]["healthcheck"]["test"] == ["CMD", "clinic", "health", "serve", "intake"]
    assert SERVICES["referral"]["healthcheck"]["test"] == ["CMD", "clinic", "health", "serve", "referral"]
    for service in ("intake", "referral"):
        worker = SERVICES[f"{service}-worker"]
        assert worker["command"] == ["clinic", "worker", service]
        assert worker["healthcheck"]["test"] == ["CMD", "clinic", "health", "worker", service]


@pytest.mark.parametrize("name", ["intake", "referral", "intake-worker", "referral-worker"])
def test_each_service_and_worker_set_runs_replicas(name: str) -> None:
    assert SERVICES[name]["deploy"]["replicas"] >= 2


def test_no_secret_is_written_in_the_file() -> None:
    for name, service in SERVICES.items():
        for key, value in env_of(service).items():
            value = str(value)
            if SECRET_NAMES.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:?[-?][^}]*)?\}", value), f"{name}: {key} is a literal"
            if "://" in value:
                # A URL's password, if any, is interpolated from the environment.
                credentials = re.match(r"^[a-z+]+://([^@/]*)@", value)
                if credentials and ":" in credentials[1]:
                    assert credentials[1].split(":", 1)[1].startswith("${"), f"{name}: {key} has a password"
    assert not re.search(r"(?i)password\s*[=:]\s*(?!\$\{)[^\s$]", COMPOSE.replace("POSTGRES_PASSWORD:", ""))


def test_the_env_example_has_every_variable_but_no_value_for_a_secret() -> None:
    example = (REPO_ROOT / ".env.example").read_text()
    lines = [line for line in example.splitlines() if line and not line.startswith("#")]
    assigned = dict(line.split("=", 1) for line in lines)
    for variable in set(re.findall(r"\$\{([A-Z_]+)", COMPOSE)):
        assert variable in assigned, f"{variable} is not in .env.example"
    for variable, value in assigned.items():
        if SECRET_NAMES.search(variable):
            assert value == "", f".env.example gives {variable} a value"
    assert ".env" in (REPO_ROOT / ".gitignore").read_text().splitlines()


def test_only_the_proxy_is_published_and_only_the_webhook_sender_reaches_outside() -> None:
    published = {name for name, service in SERVICES.items() if service.get("ports")}
    assert published == {"proxy"}
    assert sorted(SERVICES["proxy"]["ports"]) == ["443:443", "80:80"]
    networks = yaml.safe_load(COMPOSE)["networks"]
    assert networks["backend"]["internal"] is True
    for name, service in SERVICES.items():
        outside = set(service["networks"]) - {"backend"}
        expected = {"proxy": {"edge"}, "referral-worker": {"egress"}}.get(name, set())
        assert outside == expected, name


def test_the_proxy_serves_tls_and_refuses_metrics_before_any_route() -> None:
    assert re.search(r"^\s*tls internal\s*$", CADDYFILE, re.MULTILINE)
    assert SERVICES["proxy"]["image"].split(":")[0] == "caddy"
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in SERVICES["proxy"]["volumes"]
    route = CADDYFILE[CADDYFILE.index("route {") :]
    refuse = route.index("respond @metrics")
    assert refuse < route.index("reverse_proxy" if "reverse_proxy" in route else "import replicas")
    matcher = re.search(r"@metrics path_regexp \w+ (\S+)", CADDYFILE)
    assert matcher
    pattern = re.compile(matcher[1].replace("(?i)", ""), re.IGNORECASE)
    for path in ("/metrics", "/intake/metrics", "/referral/METRICS", "/metrics/"):
        assert pattern.search(path)


def test_the_proxy_sends_each_api_path_to_its_service() -> None:
    intake = re.search(r"@intake path (.+)", CADDYFILE)
    assert intake
    assert {"/v1/intakes", "/v1/intakes/*", "/v1/inbound/*", "/v1/patients", "/"} <= set(intake[1].split())
    assert not any(p.startswith(("/v1/referrals", "/v1/webhooks")) for p in intake[1].split())
    assert "handle_path /intake/* {\n\t\t\timport replicas intake 8001" in CADDYFILE
    assert "handle_path /referral/* {\n\t\t\timport replicas referral 8002" in CADDYFILE
    assert "handle @intake {\n\t\t\timport replicas intake 8001" in CADDYFILE
    assert "handle {\n\t\t\timport replicas referral 8002" in CADDYFILE


def test_the_proxy_routes_match_the_services_routes() -> None:
    """Every intake route is under the proxy's intake paths; no referral route is."""
    from services.common.settings import load_settings
    from services.intake.app import create_app as intake_app
    from services.referral.app import create_app as referral_app

    settings = load_settings()
    intake_routes = {r.path for r in intake_app(settings, engine=_no_engine()).routes}
    referral_routes = {r.path for r in referral_app(settings, engine=_no_engine()).routes}

    matcher = next(line.split()[2:] for line in CADDYFILE.splitlines() if "@intake path" in line)

    def to_intake(path: str) -> bool:
        """What the Caddyfile's `@intake` matcher sends to the intake service."""
        bare = path.split("{")[0].rstrip("/") or "/"
        return any(
            bare == pattern or (pattern.endswith("/*") and (bare + "/").startswith(pattern[:-1]))
            for pattern in matcher
        )

    shared = {p for p in intake_routes & referral_routes}  # health, schema, metrics, dead events, sign-in
    assert {p for p in intake_routes - shared} == {p for p in intake_routes - shared if to_intake(p)}
    assert not any(to_intake(p) for p in referral_routes - shared)


def _no_engine() -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
