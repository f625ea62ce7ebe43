"""No Docker engine runs here, so the compose file is checked for what it promises."""

from __future__ import annotations

import yaml

from services.cli import build_parser
from tests.conftest import REPO_ROOT


def test_compose_has_database_migrator_services_and_workers_with_real_commands() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "migrate", "intake", "referral", "intake-worker", "referral-worker"} <= set(services)
    assert "healthcheck" in services["postgres"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    parser = build_parser()
    for name, service in services.items():
        if name == "postgres":
            continue
        command = service["command"]
        assert command[0] == "clinic"
        parser.parse_args(command[1:])  # exits (fails the test) on an unknown command
        assert service["environment"]["CLINIC_DATABASE_URL"].startswith("postgresql://")
    for name in ("intake", "referral"):
        assert "/health/ready" in " ".join(services[name]["healthcheck"]["test"])
    assert services["referral-worker"]["deploy"]["replicas"] > 1
