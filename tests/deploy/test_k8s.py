"""deploy/k8s: the Kustomize base parses, its names match the compose services, every pod is wired like compose."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from partnerhub import SERVICES
from partnerhub.kafka import TOPICS
from tests.deploy.support import (
    DEPLOY,
    K8S,
    compose_config,
    database_url_name,
    default_port,
    environment,
    kustomize_command,
    port_name,
    settings_env_names,
)

APP_IMAGE = "partnerhub"


def load_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return document


@pytest.fixture(scope="module")
def resources(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    documents = []
    for entry in kustomization["resources"]:
        path = K8S / entry
        if path.is_dir():
            continue
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def env_names(container: dict[str, Any], config: dict[str, str]) -> set[str]:
    names = {e["name"] for e in container.get("env", [])}
    sources = container.get("envFrom", [])
    if any(source.get("configMapRef", {}).get("name") == "partnerhub-config" for source in sources):
        names |= set(config)
    return names


def test_every_manifest_parses_and_is_listed(kustomization: dict[str, Any], resources: list[dict[str, Any]]) -> None:
    listed = {K8S / entry for entry in kustomization["resources"]}
    for path in K8S.glob("*.yaml"):
        if path.name != "kustomization.yaml":
            assert path in listed, f"{path.name} is not in kustomization.yaml"
    for entry in listed:
        assert entry.exists(), entry
        if entry.is_dir():
            assert (entry / "kustomization.yaml").exists()
    for resource in resources:
        assert resource.get("apiVersion") and resource.get("kind") and resource["metadata"].get("name"), resource
    generated = [*kustomization.get("configMapGenerator", []), *kustomization.get("secretGenerator", [])]
    for generator in generated:
        for file in generator.get("envs", []):
            assert (K8S / file).exists() or (K8S / f"{file}.example").exists(), file


def test_service_names_and_ports_match_compose(resources: list[dict[str, Any]]) -> None:
    compose = compose_config()["services"]
    services = by_kind(resources, "Service")
    assert set(services) == {*SERVICES, "gateway"}
    assert set(services) <= set(compose)
    for name in SERVICES:
        port = int(environment(compose[name]).get(port_name(name), default_port(name)))
        assert services[name]["spec"]["ports"][0]["port"] == port
        selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "api"}
        assert services[name]["spec"]["selector"] == selector
    config = load_env_file(K8S / "config.env")
    assert config["PARTNERHUB_REGISTRY_URL"] == f"http://registry:{default_port('registry')}"
    for name in SERVICES:
        assert int(config[port_name(name)]) == default_port(name)


def test_each_service_has_an_api_and_a_worker_deployment(resources: list[dict[str, Any]]) -> None:
    deployments = by_kind(resources, "Deployment")
    assert set(deployments) == {*SERVICES, *(f"{s}-worker" for s in SERVICES), "gateway"}
    for name in SERVICES:
        for deployment, disabled in ((name, "PARTNERHUB_RUN_WORKERS"), (f"{name}-worker", "PARTNERHUB_RUN_API")):
            container = pod_spec(deployments[deployment])["containers"][0]
            assert container["command"] == ["partnerhub", "serve", name]
            assert {"name": disabled, "value": "false"} in container["env"], deployment
            assert container["ports"][0]["containerPort"] == default_port(name)
            labels = deployments[deployment]["spec"]["template"]["metadata"]["labels"]
            assert deployments[deployment]["spec"]["selector"]["matchLabels"] == labels


def test_pods_probe_health_and_readiness_and_request_resources(resources: list[dict[str, Any]]) -> None:
    for name, deployment in by_kind(resources, "Deployment").items():
        spec = pod_spec(deployment)
        container = spec["containers"][0]
        port = container["ports"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["livenessProbe"]["httpGet"]["port"] in (port["name"], port["containerPort"])
        wanted = "/healthz" if name == "gateway" else "/readyz"
        assert container["readinessProbe"]["httpGet"]["path"] == wanted, name
        for each in [*spec.get("initContainers", []), *spec["containers"]]:
            requests = each["resources"]["requests"]
            assert requests.get("cpu") and requests.get("memory"), f"{name}/{each['name']}"
            assert each["resources"]["limits"].get("memory"), f"{name}/{each['name']}"
            assert each["securityContext"]["allowPrivilegeEscalation"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        if name != "gateway":
            assert spec["securityContext"]["runAsUser"] == 10001, "the image's user (deploy/Dockerfile)"
            assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(
                port["containerPort"]
            )


def test_pods_read_only_settings_and_their_own_secrets(resources: list[dict[str, Any]]) -> None:
    config = load_env_file(K8S / "config.env")
    secrets = load_env_file(K8S / "secrets.env.example")
    known = settings_env_names()
    assert set(config) - known == set(), "config.env names settings that do not exist"
    assert set(secrets) - known == set()
    workloads = {**by_kind(resources, "Deployment"), **by_kind(resources, "Job")}
    for name, workload in workloads.items():
        if name == "gateway":
            continue
        spec = pod_spec(workload)
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            assert container["image"] == APP_IMAGE, f"{name}: the one image"
            assert env_names(container, config) - known == set(), f"{name}/{container['name']}"
            for entry in container.get("env", []):
                reference = entry.get("valueFrom", {}).get("secretKeyRef")
                if reference:
                    assert reference["name"] == "partnerhub-secrets" and reference["key"] in secrets
            databases = {e["name"] for e in container.get("env", []) if e["name"].endswith("_DATABASE_URL")}
            if name == "partnerhub-migrate":
                assert databases == {database_url_name(s) for s in SERVICES}
            elif name != "partnerhub-topics":
                service = name.removesuffix("-worker")
                assert databases == {database_url_name(service)}, f"{name} must see its own database only"


def test_services_wait_for_migrations_and_topics(resources: list[dict[str, Any]]) -> None:
    jobs = by_kind(resources, "Job")
    assert pod_spec(jobs["partnerhub-migrate"])["containers"][0]["command"] == ["partnerhub", "migrate"]
    topics = pod_spec(jobs["partnerhub-topics"])["containers"][0]["command"]
    assert topics[:4] == ["python", "-m", "partnerhub.ops", "create-topics"]
    assert int(topics[topics.index("--replication-factor") + 1]) >= 3, "a cluster replicates its topics"
    for name, deployment in by_kind(resources, "Deployment").items():
        if name == "gateway":
            continue
        init = pod_spec(deployment)["initContainers"][0]
        assert init["command"] == ["python", "-m", "partnerhub.ops", "wait-ready", name.removesuffix("-worker")]


def test_consumers_scale_up_to_their_partitions(resources: list[dict[str, Any]]) -> None:
    deployments = by_kind(resources, "Deployment")
    autoscalers = by_kind(resources, "HorizontalPodAutoscaler")
    for name in ("accounts", "incentives", "funds", "webhooks"):
        worker = autoscalers[f"{name}-worker"]
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{name}-worker"}
        assert worker["spec"]["scaleTargetRef"] == target
        assert 1 <= worker["spec"]["minReplicas"] <= worker["spec"]["maxReplicas"] <= max(TOPICS.values())
        assert "replicas" not in deployments[f"{name}-worker"]["spec"], "the autoscaler owns the replica count"
    assert autoscalers["incentives-worker"]["spec"]["maxReplicas"] == TOPICS["sales.recorded"]
    for autoscaler in autoscalers.values():
        assert autoscaler["spec"]["scaleTargetRef"]["name"] in deployments


def test_the_gateway_template_is_shared_with_compose() -> None:
    gateway = yaml.safe_load((DEPLOY / "gateway" / "kustomization.yaml").read_text())
    assert gateway["configMapGenerator"][0] == {"name": "gateway-template", "files": ["default.conf.template"]}
    compose_gateway = compose_config()["services"]["gateway"]
    assert any("deploy/gateway/default.conf.template" in str(v) for v in compose_gateway["volumes"])


def test_kustomize_builds_the_base(tmp_path: Path) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    (copy / "k8s" / "secrets.env").write_text((copy / "k8s" / "secrets.env.example").read_text())
    command = [*kustomize_command(), str(copy / "k8s")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    names = {(d["kind"], d["metadata"]["name"]) for d in built}
    referenced = set()
    for document in built:
        if document["kind"] in {"Deployment", "Job"}:
            spec = pod_spec(document)
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                for source in container.get("envFrom", []):
                    referenced.add(("ConfigMap", source["configMapRef"]["name"]))
                for entry in container.get("env", []):
                    if "secretKeyRef" in entry.get("valueFrom", {}):
                        referenced.add(("Secret", entry["valueFrom"]["secretKeyRef"]["name"]))
            for volume in spec.get("volumes", []):
                if "configMap" in volume:
                    referenced.add(("ConfigMap", volume["configMap"]["name"]))
    assert referenced and referenced <= names, "every generated name reference resolves"
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "partnerhub" for d in built)
