"""deploy/gateway/Dockerfile: nginx with the Partner Center page built in, the image compose builds and the cluster
runs; its build steps work on this repository."""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

import yaml

from tests.deploy.support import DEPLOY, GATEWAY_TEMPLATE, K8S, ROOT, compose_config, http_server, parse_nginx

DOCKERFILE = DEPLOY / "gateway" / "Dockerfile"
IGNORE = DEPLOY / "gateway" / "Dockerfile.dockerignore"
TEMPLATE_IN_IMAGE = "/etc/nginx/templates/default.conf.template"


def instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", "", DOCKERFILE.read_text())
    steps = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            steps.append((keyword.upper(), rest.strip()))
    return steps


def build_args() -> dict[str, str]:
    return dict(args.split("=", 1) for keyword, args in instructions() if keyword == "ARG" and "=" in args)


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for step in instructions():
        if step[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(step)
    return result


def included(path: str) -> bool:
    """Whether the build context keeps path, by Dockerfile.dockerignore's rules (the last matching rule wins)."""
    keep = True
    for rule in (line.strip() for line in IGNORE.read_text().splitlines()):
        if not rule or rule.startswith("#"):
            continue
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.replace("**/", "")) for prefix
               in prefixes):
            keep = negated
    return keep


def test_two_stages_the_page_built_then_nginx() -> None:
    build, final = stages()
    args = build_args()
    assert build[0][1].startswith("${NODE_IMAGE}") and args["NODE_IMAGE"].startswith("node:")
    major = int(re.match(r"node:(\d+)", args["NODE_IMAGE"]).group(1))  # type: ignore[union-attr]
    assert major >= 20, "vite 8 needs Node.js 20.19 or newer (web/package.json engines)"
    runs = " && ".join(a for k, a in build if k == "RUN")
    assert "npm ci" in runs and "npm run build" in runs
    assert final[0][1] == "${NGINX_IMAGE}" and args["NGINX_IMAGE"].startswith("nginxinc/nginx-unprivileged:")
    assert not any(keyword == "RUN" for keyword, _ in final), "nothing but files on top of nginx"
    users = [a for k, a in final if k == "USER"]
    assert users and users[-1] == "101", "the cluster's runAsUser"


def test_the_page_lands_where_the_template_serves_it_from() -> None:
    _, final = stages()
    copies = [a.split() for k, a in final if k == "COPY"]
    rendered = re.sub(r"\$\{[A-Z_]+\}", "x", GATEWAY_TEMPLATE.read_text())
    root = http_server(parse_nginx(rendered)).first("root")
    assert root is not None
    assert ["--from=web", "/web/dist/", root.args[0].rstrip("/") + "/"] in copies
    assert ["deploy/gateway/default.conf.template", TEMPLATE_IN_IMAGE] in copies


def test_copied_sources_exist_and_pass_the_images_dockerignore() -> None:
    for keyword, args in instructions():
        if keyword == "COPY" and not args.startswith("--from"):
            *sources, _destination = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert included(source.rstrip("/")), f"{source} is excluded by {IGNORE.name}"
    for left_out in ("web/node_modules", "web/node_modules/react/index.js", "web/dist/index.html", ".env", ".venv",
                     "tests", "partnerhub"):
        assert not included(left_out), left_out
    assert included("web/src") and included("web/package-lock.json")


def test_the_page_build_is_reproducible_from_the_lock() -> None:
    package = json.loads((ROOT / "web" / "package.json").read_text())
    lock = json.loads((ROOT / "web" / "package-lock.json").read_text())
    assert "build" in package["scripts"]
    declared = {**package.get("dependencies", {}), **package.get("devDependencies", {})}
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", version) for version in declared.values()), "exact versions"
    assert lock["packages"][""].get("dependencies", {}) == package.get("dependencies", {})


def test_compose_builds_the_image_and_the_cluster_runs_it() -> None:
    gateway = compose_config()["services"]["gateway"]
    assert gateway["build"]["dockerfile"] == "deploy/gateway/Dockerfile"
    assert gateway["image"].startswith("partnerhub-gateway")
    documents = [d for d in yaml.safe_load_all((K8S / "gateway.yaml").read_text()) if d]
    deployment: dict[str, Any] = next(d for d in documents if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "partnerhub-gateway"
    assert pod["securityContext"]["runAsUser"] == 101
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert "partnerhub-gateway" in {image["name"] for image in kustomization["images"]}
