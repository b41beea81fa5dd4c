"""docker-compose.yml: accepted by docker-compose, healthy start order, settings the services really read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from partnerhub import SERVICES
from partnerhub.ops import topic_plan
from tests.deploy.support import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ROOT,
    command,
    compose_config,
    compose_run,
    database_url_name,
    default_port,
    depends_on,
    environment,
    is_app_service,
    is_one_shot,
    port_name,
    settings_env_names,
)

INFRASTRUCTURE = {"kafka", "postgres", "gateway", "prometheus", "jaeger"}
ONE_SHOTS = {"migrate", "topics"}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return compose_config()


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(config["services"])


def service_port(services: dict[str, dict[str, Any]], name: str) -> int:
    return int(environment(services[name]).get(port_name(name), default_port(name)))


def test_docker_compose_accepts_the_file_with_the_documented_env(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == set(SERVICES) | INFRASTRUCTURE | ONE_SHOTS


def test_missing_secrets_stop_compose_with_a_message_naming_them(tmp_path: Path) -> None:
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if not line.startswith("PARTNERHUB_JWT_SECRET=")]
    env_file = tmp_path / "no-secret.env"
    env_file.write_text("\n".join(lines) + "\n")
    result = compose_run(["--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"])
    assert result.returncode != 0
    assert "PARTNERHUB_JWT_SECRET" in result.stderr


def test_every_variable_the_file_uses_is_documented_in_env_example() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    documented = {line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"[A-Z]", line)}
    assert used - documented == set(), "add these to .env.example with a comment"
    settings_like = {name for name in documented if name.startswith("PARTNERHUB_")} - {"PARTNERHUB_IMAGE"}
    assert settings_like - settings_env_names() == set(), ".env.example names settings that do not exist"


def test_every_long_running_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name in ONE_SHOTS:
            assert is_one_shot(service), f"{name} runs once: restart must be 'no'"
            assert "healthcheck" not in service, f"{name} runs once; its completion is what others wait for"
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", f"{name} should come back after a crash or reboot"


def test_start_order_waits_for_health_and_for_the_one_shots(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dependency, condition in depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            wanted = "service_completed_successfully" if dependency in ONE_SHOTS else "service_healthy"
            assert condition == wanted, f"{name} → {dependency}: {condition}, want {wanted}"
    for name in SERVICES:
        assert {"postgres", "kafka", "migrate", "topics"} <= set(depends_on(services[name])), name
    assert set(depends_on(services["gateway"])) == set(SERVICES)
    assert set(depends_on(services["migrate"])) == {"postgres"}
    assert set(depends_on(services["topics"])) == {"kafka"}


def test_services_run_the_one_image_chosen_by_command(services: dict[str, dict[str, Any]]) -> None:
    images = {services[name]["image"] for name in (*SERVICES, *ONE_SHOTS)}
    assert len(images) == 1
    for name in (*SERVICES, *ONE_SHOTS):
        assert is_app_service(services[name]), f"{name} must be built from deploy/Dockerfile"
        assert services[name]["build"]["context"] in {str(ROOT), "."}
    for name in SERVICES:
        assert command(services[name]) == ["partnerhub", "serve", name]
    assert command(services["migrate"]) == ["partnerhub", "migrate"]
    assert command(services["topics"])[:4] == ["python", "-m", "partnerhub.ops", "create-topics"]


def test_services_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    """`docker compose up --scale incentives=3`: no fixed host port, no fixed container name."""
    for name in (*SERVICES, *ONE_SHOTS):
        assert not services[name].get("ports"), f"{name} publishes a host port: it could not be scaled"
        assert "container_name" not in services[name], name


# Read by the OpenTelemetry SDK (partnerhub/tracing.py), not by Settings.
OPENTELEMETRY = {"OTEL_EXPORTER_OTLP_ENDPOINT"}


def test_every_variable_set_for_the_app_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    known = settings_env_names() | OPENTELEMETRY
    for name, service in services.items():
        if is_app_service(service):
            unknown = set(environment(service)) - known
            assert unknown == set(), f"{name} sets {sorted(unknown)}, which no setting reads (partnerhub/config.py)"


def test_each_service_gets_what_it_needs_and_only_its_own_database(services: dict[str, dict[str, Any]]) -> None:
    for name in SERVICES:
        env = environment(services[name])
        assert env["PARTNERHUB_HOST"] == "0.0.0.0", f"{name} would listen on its container's loopback only"
        assert env["KAFKA_BOOTSTRAP_SERVERS"] and env["PARTNERHUB_JWT_SECRET"], name
        assert env["PARTNERHUB_KAFKA_IDEMPOTENCE"] == "true", "a real Kafka takes idempotent producers"
        granted = {key for key in env if key.endswith("_DATABASE_URL")}
        assert granted == {database_url_name(name)}, f"{name} must see its own database only"
    assert environment(services["accounts"])["PARTNERHUB_REGISTRY_URL"] == (
        f"http://registry:{service_port(services, 'registry')}"
    )
    migrate = environment(services["migrate"])
    assert {database_url_name(s) for s in SERVICES} <= set(migrate)
    assert "KAFKA_BOOTSTRAP_SERVERS" in environment(services["topics"])


def test_database_urls_match_the_postgres_roles_and_databases(services: dict[str, dict[str, Any]]) -> None:
    postgres = environment(services["postgres"])
    init_script = (ROOT / "deploy/postgres/init-databases.sh").read_text()
    for name in SERVICES:
        url = urlsplit(environment(services[name])[database_url_name(name)])
        assert url.scheme == "postgresql+asyncpg"
        assert (url.hostname, url.port, url.path, url.username) == ("postgres", 5432, f"/{name}", name)
        password_variable = f"{name.upper()}_DB_PASSWORD"
        assert url.password == postgres[password_variable], f"{name}'s URL and postgres disagree on its password"
        assert f"create_service_database {name} " in init_script
        assert environment(services["migrate"])[database_url_name(name)] == environment(services[name])[
            database_url_name(name)
        ]


def test_kafka_runs_kraft_with_listeners_for_the_network_and_the_host(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    env = environment(kafka)
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in env)
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(advertised) <= set(listeners) <= set(protocols)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] not in advertised
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics come from the topics service"
    for name in (*SERVICES, "topics"):
        bootstrap = environment(services[name])["KAFKA_BOOTSTRAP_SERVERS"]
        assert bootstrap in advertised.values(), f"{name} bootstraps from {bootstrap}, which kafka does not advertise"
        assert bootstrap.split(":")[0] == "kafka"
    assert any(volume.endswith(":/var/lib/kafka/data") or "/var/lib/kafka/data" in str(volume)
               for volume in kafka["volumes"])


def test_the_topics_service_creates_every_topic_with_its_partitions(services: dict[str, dict[str, Any]]) -> None:
    args = command(services["topics"])
    replication = int(args[args.index("--replication-factor") + 1])
    assert replication == 1, "one broker in compose"
    plan = {t.name: t.partitions for t in topic_plan(replication, None)}
    assert plan["sales.recorded"] == 12 and plan["sales.recorded.dlq"] >= 1
    assert all(f"{topic}.dlq" in plan for topic in plan if not topic.endswith(".dlq"))


def test_postgres_is_a_current_major_with_its_data_on_a_named_volume(
    services: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    postgres = services["postgres"]
    image, _, tag = postgres["image"].partition(":")
    assert image == "postgres"
    major = int(re.match(r"\d+", tag).group(0))  # type: ignore[union-attr]
    assert major >= 17
    targets = {_volume_target(v): _volume_source(v) for v in postgres["volumes"]}
    # 18+ keeps data in /var/lib/postgresql/<major>/docker and refuses a mount at .../data.
    assert targets.get("/var/lib/postgresql") == "postgres-data"
    assert "/docker-entrypoint-initdb.d/10-partnerhub-databases.sh" in targets
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = _volume_source(volume)
            if source.startswith(("/", ".")):
                assert (ROOT / source).exists() or Path(source).exists(), f"{name} mounts a missing {source}"
            else:
                assert source in config["volumes"], f"{name} uses an undeclared volume {source}"


def test_ports_agree_between_services_healthchecks_and_gateway(services: dict[str, dict[str, Any]]) -> None:
    gateway = environment(services["gateway"])
    for name in SERVICES:
        port = service_port(services, name)
        assert port == default_port(name)
        assert services[name]["healthcheck"]["test"][-1] == f"http://127.0.0.1:{port}/readyz"
        assert [str(p) for p in services[name].get("expose", [])] == [str(port)]
        assert gateway[f"GATEWAY_{name.upper()}_UPSTREAM"] == f"{name}:{port}"
    published = [str(p) for p in services["gateway"]["ports"]]
    assert any(p.endswith(":8080") or "8080" in p for p in published)


def test_prometheus_scrapes_every_service_on_its_port(services: dict[str, dict[str, Any]]) -> None:
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        name: sd["port"] for job in prometheus["scrape_configs"] for sd in job["dns_sd_configs"] for name in sd["names"]
    }
    assert targets == {name: service_port(services, name) for name in SERVICES}


def _volume_source(volume: Any) -> str:
    if isinstance(volume, dict):
        return str(volume.get("source", ""))
    return str(volume).split(":")[0]


def _volume_target(volume: Any) -> str:
    if isinstance(volume, dict):
        return str(volume.get("target", ""))
    return str(volume).split(":")[1]
