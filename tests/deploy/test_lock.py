"""requirements.lock: every dependency at one exact version, and the one ./run and the image install."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import distributions

from tests.deploy.support import ROOT
from tests.deploy.test_image import instructions

LOCK = ROOT / "requirements.lock"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version and not re.search(r"[<>~!*;@ ]", line), f"not an exact pin: {line}"
            pins[canonical(name)] = version
    return pins


def test_every_declared_dependency_is_pinned_exactly() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    names = {canonical(re.match(r"[A-Za-z0-9_.-]+", d).group(0)) for d in declared}  # type: ignore[union-attr]
    assert names - set(locked()) == set()


def test_this_environment_is_the_lock() -> None:
    """What ./run installed is the lock, transitive dependencies included: nothing newer slipped in."""
    pins = locked()
    installed = {canonical(d.metadata["Name"]): d.version for d in distributions()}
    installed.pop("partnerhub", None)
    for tool in ("pip", "setuptools", "wheel"):
        installed.pop(tool, None)
    assert {n: v for n, v in installed.items() if pins.get(n) != v} == {}
    assert set(pins) - set(installed) == set(), "pinned but not installed"


def test_run_and_the_image_install_from_the_lock() -> None:
    run = (ROOT / "run").read_text()
    assert '-c "$LOCK" -e "$ROOT[test]"' in run and 'LOCK="$ROOT/requirements.lock"' in run
    dependency_step = next(args for keyword, args in instructions() if keyword == "RUN" and "tomllib" in args)
    assert "-c requirements.lock" in dependency_step
    copied = [args for keyword, args in instructions() if keyword == "COPY" and "requirements.lock" in args]
    assert copied
