"""docs/webhooks.md, run as written (its receiver saved as receiver.py, its bash blocks in order) against
`partnerhub up`, then checked: the receiver verified every delivery, and recognised the repeated ones."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from partnerhub.embedded import free_port
from tests.e2e.conftest import ROOT, Hub

pytestmark = pytest.mark.e2e
DOC = ROOT / "docs" / "webhooks.md"
DEFAULT_PORTS = {"registry": 8001, "webhooks": 8005}
RECEIVER = "127.0.0.1:9000"


def adapted(text: str, hub: Hub, receiver_port: int) -> str:
    """`up`'s default ports replaced by this hub's, the receiver's by a free one, ./run and .venv by their paths."""
    for service, port in DEFAULT_PORTS.items():
        text = text.replace(f"localhost:{port}", f"127.0.0.1:{hub.ports[service]}")
    text = text.replace(RECEIVER, f"127.0.0.1:{receiver_port}").replace('("127.0.0.1", 9000)',
                                                                       f'("127.0.0.1", {receiver_port})')
    return text.replace("./run ", f"{ROOT}/run ").replace(".venv/bin/python ", f"{sys.executable} ")


async def test_the_webhooks_walkthrough_runs_as_written(hub: Hub, tmp_path: Path) -> None:
    text = DOC.read_text()
    [receiver] = re.findall(r"```python\n(.*?)```", text, re.S)
    port = free_port("127.0.0.1")
    (tmp_path / "receiver.py").write_text(adapted(receiver, hub, port))
    script = adapted("\n".join(re.findall(r"```bash\n(.*?)```", text, re.S)), hub, port)
    done = await asyncio.to_thread(
        subprocess.run, ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=hub.env(),
        capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    printed = done.stdout.splitlines()
    assert printed[:3] == ["active", "active", "partner.status_changed registered "], done.stdout
    assert "partner.status_changed delivered [204]" in printed and "accepted" in printed, done.stdout
    assert printed[-3:-1] == ["paused", "204"] and "a cloud metadata address" in printed[-1], done.stdout

    received = (tmp_path / "received.log").read_text().splitlines()
    assert received[:3] == ["partner.status_changed registered ", "partner.tier_changed gold ",
                            "partner.status_changed registered again"], received  # the third: the retry
    # The replay: both again, in either order; then the tier change verified with the rotated secret.
    assert sorted(received[3:5]) == ["partner.status_changed registered again", "partner.tier_changed gold again"]
    assert received[5:] == ["partner.tier_changed platinum "], received
