"""Schemathesis, every check and every phase, against each service of a running `partnerhub up`: nothing found.

The services' OpenAPI documents must describe them exactly (CONTRACT §1 v2): what a schema allows is accepted
(save the state-dependent answers listed, with their reasons, in schemathesis.toml), what it forbids is refused
with a documented problem, and nothing answers 5xx. Bounded for the suite; PARTNERHUB_FUZZ_EXAMPLES (default 10)
and PARTNERHUB_FUZZ_SEED run it longer or differently by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from partnerhub import SERVICES
from partnerhub.auth import issue_token
from partnerhub.config import Settings
from tests.e2e.conftest import SECRET, Hub, hub

__all__ = ["hub"]

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = int(os.environ.get("PARTNERHUB_FUZZ_EXAMPLES", "10"))
SEED = os.environ.get("PARTNERHUB_FUZZ_SEED", "20261206")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def token(role: str) -> str:
    partner_id = str(uuid.UUID(int=1)) if role == "partner" else None
    return issue_token(Settings(jwt_secret=SECRET), role, None, partner_id)


ROLES = ("admin", "partner")


@pytest.mark.parametrize("service", SERVICES)
def test_schemathesis_finds_nothing(hub: Hub, service: str, tmp_path: Path) -> None:
    """With an admin token and with a partner token, the two runs side by side (one core each)."""
    runs = {}
    for role in ROLES:
        env = {**os.environ, "PARTNERHUB_FUZZ_TOKEN": token(role), "PARTNERHUB_FUZZ_SYSTEM_TOKEN": token("system"),
               "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
        workdir = tmp_path / role  # its cache stays out of the tree
        workdir.mkdir()
        # One worker each: hypothesis describes its strategies by parsing source, which CPython 3.11 can get
        # wrong when two threads do it at once.
        runs[role] = subprocess.Popen(
            [str(SCHEMATHESIS), "--no-color", "--config-file", str(CONFIG), "run", f"{hub.url(service)}/openapi.json",
             "--checks", "all", "--max-examples", str(EXAMPLES), "--seed", SEED, "--workers", "1"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir,
        )
    outcomes = {role: run.communicate(timeout=600) for role, run in runs.items()}
    for role, (stdout, stderr) in outcomes.items():
        summary = stdout[stdout.find("FAILURES"):] if "FAILURES" in stdout else stdout[-4000:]
        assert runs[role].returncode == 0, (
            f"schemathesis found something on {service} ({role} token):\n{summary}\n{stderr}")
        assert "Coverage" in stdout and "Stateful" in stdout, stdout[-2000:]
    # The service is still well after everything it was sent.
    assert httpx.get(f"{hub.url(service)}/readyz", timeout=10).status_code == 200
