"""Helpers for the deployment checks: the tools they need, nginx's configuration language, the settings' names."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from partnerhub import SERVICES
from partnerhub.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
GATEWAY_TEMPLATE = DEPLOY / "gateway" / "default.conf.template"
K8S = DEPLOY / "k8s"
APP_IMAGE_MARKER = "deploy/Dockerfile"


# --- tools -----------------------------------------------------------------------------------------------
def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, **kwargs)


def _apt_get_install(package: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", package]
    result = _run(command, env=env)
    if result.returncode != 0:
        _run(["apt-get", "update"], env=env)
        result = _run(command, env=env)
    if result.returncode != 0:
        pytest.fail(f"apt-get install {package} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


@functools.cache
def docker_compose() -> list[str]:
    """The compose command: Debian's docker-compose (installed here when missing and running as root)."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and _run(["docker", "compose", "version"]).returncode == 0:
        return ["docker", "compose"]
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail(
            "the deployment checks need docker-compose to validate docker-compose.yml: install it "
            "(Debian: sudo apt-get install --no-install-recommends docker-compose) and run the tests again"
        )
    _apt_get_install("docker-compose")
    if not shutil.which("docker-compose"):
        pytest.fail("apt-get installed docker-compose, yet no docker-compose command is on PATH")
    return ["docker-compose"]


@functools.cache
def kustomize_command() -> list[str]:
    """A command that builds a Kustomize directory: a current kubectl (this machine kind's image ships one) or
    kustomize. Debian's kubernetes-client (kubectl 1.20) is too old for this base (`configMapGenerator.envs`),
    so a missing tool is a clear failure rather than a skip or an install that cannot work."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    pytest.fail(
        "the Kustomize check needs a current kubectl (1.21 or newer) or kustomize on PATH; "
        "install one and run the tests again"
    )


@functools.cache
def nginx_binary(cache_dir: Path) -> Path:
    """nginx from PATH, else Debian's nginx package unpacked into cache_dir (no service is installed or started)."""
    found = shutil.which("nginx")
    if found:
        return Path(found)
    unpacked = cache_dir / "root" / "usr" / "sbin" / "nginx"
    if unpacked.exists():
        return unpacked
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        pytest.fail("the gateway checks need nginx: install it (Debian: apt-get install nginx) and run again")
    cache_dir.mkdir(parents=True, exist_ok=True)
    result = _run(["apt-get", "download", "nginx"], cwd=cache_dir)
    if result.returncode != 0 and os.geteuid() == 0:
        _run(["apt-get", "update"])
        result = _run(["apt-get", "download", "nginx"], cwd=cache_dir)
    debs = sorted(cache_dir.glob("nginx_*.deb"))
    if result.returncode != 0 or not debs:
        pytest.fail(f"could not fetch Debian's nginx package for the gateway checks:\n{result.stderr[-2000:]}")
    extracted = _run(["dpkg-deb", "-x", str(debs[-1]), str(cache_dir / "root")])
    if extracted.returncode != 0 or not unpacked.exists():
        pytest.fail(f"could not unpack {debs[-1].name}: {extracted.stderr}")
    return unpacked


# --- the compose file --------------------------------------------------------------------------------------
def compose_config(env_file: Path = ENV_EXAMPLE) -> dict[str, Any]:
    """The compose file as docker-compose resolves it (anchors merged, variables interpolated from env_file)."""
    result = compose_run(["--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"])
    if result.returncode != 0:
        pytest.fail(f"docker-compose rejected docker-compose.yml:\n{result.stderr}")
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def compose_run(args: list[str]) -> subprocess.CompletedProcess[str]:
    # A clean environment: values from the test session (PARTNERHUB_JWT_SECRET, ...) must not leak in.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
    return _run([*docker_compose(), *args], cwd=ROOT, env=env)


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A compose service's environment as a mapping, whichever form the compose version prints."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.split("=", 1) for item in raw)
        return {key: value for key, value in pairs}
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def is_app_service(service: Mapping[str, Any]) -> bool:
    build = service.get("build") or {}
    return isinstance(build, dict) and str(build.get("dockerfile", "")).endswith(APP_IMAGE_MARKER)


def command(service: Mapping[str, Any]) -> list[str]:
    raw = service.get("command") or []
    return raw.split() if isinstance(raw, str) else [str(part) for part in raw]


def is_one_shot(service: Mapping[str, Any]) -> bool:
    return str(service.get("restart", "no")) in {"no", "False", "false"}


# --- settings ---------------------------------------------------------------------------------------------
def settings_env_names() -> set[str]:
    """Every environment variable Settings reads (field names with the prefix, or their aliases)."""
    prefix = str(Settings.model_config.get("env_prefix") or "")
    names: set[str] = set()
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{name}")
    return {name.upper() for name in names}


def database_url_name(service: str) -> str:
    return f"PARTNERHUB_{service.upper()}_DATABASE_URL"


def port_name(service: str) -> str:
    return f"PARTNERHUB_{service.upper()}_PORT"


def default_port(service: str) -> int:
    default = Settings.model_fields[f"{service}_port"].default
    assert isinstance(default, int)
    return default


def app_services() -> tuple[str, ...]:
    return SERVICES


# --- nginx ------------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"""\s+|#[^\n]*|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|[{};]|[^\s{};"'#]+""")


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None

    def find(self, name: str) -> Iterator[Directive]:
        return (child for child in self.block or [] if child.name == name)

    def first(self, name: str) -> Directive | None:
        return next(self.find(name), None)


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def parse_nginx(text: str) -> list[Directive]:
    """nginx's configuration language as a tree of directives (comments dropped, quotes removed)."""
    tokens = [t for t in _TOKEN.findall(text) if t.strip() and not t.startswith("#")]
    position = 0

    def block() -> list[Directive]:
        nonlocal position
        directives: list[Directive] = []
        words: list[str] = []
        while position < len(tokens):
            token = tokens[position]
            position += 1
            if token == ";":
                directives.append(Directive(words[0], words[1:]))
                words = []
            elif token == "{":
                directives.append(Directive(words[0], words[1:], block()))
                words = []
            elif token == "}":
                assert not words, f"unterminated directive {words}"
                return directives
            else:
                words.append(_unquote(token))
        assert not words, f"unterminated directive {words}"
        return directives

    return block()


def render_template(text: str, env: Mapping[str, str]) -> str:
    """What the nginx image's envsubst makes of a template: the variables defined in env, and only those."""
    if not env:
        return text
    names = "|".join(re.escape(name) for name in sorted(env, key=len, reverse=True))
    pattern = re.compile(r"\$\{(" + names + r")\}|\$(" + names + r")(?![A-Za-z0-9_])")
    return pattern.sub(lambda match: env[match.group(1) or match.group(2)], text)


def match_location(server: Directive, uri: str) -> Directive | None:
    """The location nginx picks for a URI: exact =, then the longest prefix (final when ^~), then regexes in order."""
    locations = [loc for loc in server.find("location") if not loc.args[-1].startswith("@")]
    for loc in locations:
        if len(loc.args) == 2 and loc.args[0] == "=" and loc.args[1] == uri:
            return loc
    prefixes = [
        loc for loc in locations
        if (len(loc.args) == 1 or loc.args[0] == "^~") and uri.startswith(loc.args[-1])
    ]
    longest = max(prefixes, key=lambda loc: len(loc.args[-1]), default=None)
    if longest is not None and longest.args[0] == "^~":
        return longest
    for loc in locations:
        if len(loc.args) == 2 and loc.args[0] in {"~", "~*"}:
            flags = re.IGNORECASE if loc.args[0] == "~*" else 0
            if re.search(loc.args[1], uri, flags):
                return loc
    return longest


def server_variables(server: Directive) -> dict[str, str]:
    return {d.args[0].lstrip("$"): d.args[1] for d in server.find("set")}


def proxy_target(server: Directive, location: Directive) -> tuple[str, str] | None:
    """(upstream "host:port", the URI sent) for a location that proxies, else None."""
    proxy = location.first("proxy_pass")
    if proxy is None:
        return None
    target = proxy.args[0]
    variables = server_variables(server)
    target = re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", lambda m: variables.get(m.group(1), m.group(0)), target)
    match = re.fullmatch(r"https?://([^/]+)(/.*)?", target)
    assert match, f"proxy_pass {proxy.args[0]} does not name an upstream"
    return match.group(1), match.group(2) or ""


def http_server(config: list[Directive]) -> Directive:
    servers = [d for d in config if d.name == "server"]
    assert len(servers) == 1, "the gateway template holds one server block"
    return servers[0]


def concrete_path(template: str) -> str:
    """A path a client could send for an OpenAPI path template."""
    samples = {"period": "2026-01", "sku": "SKU-1", "code": "MDF-2026"}
    return re.sub(r"\{([^}]+)\}", lambda m: samples.get(m.group(1), f"3f2b6c1e-{m.group(1).replace('_', '-')}"),
                  template)
