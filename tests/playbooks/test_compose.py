"""docker-compose.yml is valid for docker-compose (Debian's 1.29) and has every part a room needs.

There is no Docker engine here: `docker-compose config` validates and resolves
the file without one, which is what CI can check.
"""

from __future__ import annotations

import os
import subprocess

import yaml

from tests.processes import REPO

SECRETS = {"REDIS_PASSWORD": "redis-pw-for-test", "POSTGRES_PASSWORD": "pg-pw-for-test",
           "LABFLEET_SECRET_KEY": "secret-for-test", "LABFLEET_PUBLIC_URL": "http://lab-controller.test:8300",
           "FLOWER_BASIC_AUTH": "admin:flower-pw-for-test", "LABFLEET_METRICS_TOKEN": "metrics-token-for-test"}


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(["docker-compose", "-f", "docker-compose.yml", "config"], cwd=REPO,
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_compose_config_is_valid_with_the_secrets_given():
    quiet = subprocess.run(["docker-compose", "-f", "docker-compose.yml", "config", "-q"], cwd=REPO,
                           env={**os.environ, **SECRETS}, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0, quiet.stderr


def test_every_service_a_room_needs_with_healthchecks_and_volumes():
    result = compose_config(SECRETS)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {"redis", "postgres", "migrate", "web", "worker", "beat", "flower"}
    long_running = {name: s for name, s in services.items() if name != "migrate"}
    assert all("healthcheck" in s and s["healthcheck"]["test"] for s in long_running.values())
    # Migrations run once, in a one-shot service, before anything that refuses an old schema starts.
    assert services["migrate"]["command"] == ["labfleet", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["web"]["command"][:2] == ["labfleet", "serve"]
    assert services["worker"]["command"][:2] == ["labfleet", "worker"]
    assert "beat" in services["beat"]["command"] and services["flower"]["command"] == ["celery", "flower"]
    env = services["web"]["environment"]
    assert env["LABFLEET_REDIS_URL"] == "redis://:redis-pw-for-test@redis:6379/0"
    assert env["LABFLEET_DATABASE_URL"] == "postgresql+psycopg://labfleet:pg-pw-for-test@postgres:5432/labfleet"
    assert env["LABFLEET_METRICS_TOKEN"] == "metrics-token-for-test"  # /metrics is not open to the room
    assert services["redis"]["environment"]["REDIS_PASSWORD"] == "redis-pw-for-test"
    assert "--requirepass" in " ".join(services["redis"]["command"])
    assert set(config["volumes"]) == {"labfleet-data", "redis-data", "postgres-data"}
    # The worker runs provisioning and shares the data dir (stage, wheels, known_hosts) with web.
    assert any(v.startswith("labfleet-data:") for v in services["worker"]["volumes"])
    assert services["worker"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert str(services["flower"]["ports"][0]).startswith("127.0.0.1:")  # Flower never on the room's network


def test_a_missing_secret_is_refused_by_name():
    for missing in SECRETS:
        result = compose_config({k: v for k, v in SECRETS.items() if k != missing})
        assert result.returncode != 0 and f"set {missing}" in result.stderr, (missing, result.stderr)


def test_the_compose_file_holds_no_secret_of_its_own():
    text = (REPO / "docker-compose.yml").read_text()
    for value in SECRETS.values():
        assert value not in text
    assert "${REDIS_PASSWORD:?" in text and "${POSTGRES_PASSWORD:?" in text
