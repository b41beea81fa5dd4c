"""`partnerhub up` itself: refuses busy ports up front, stops cleanly at any moment, leaves nothing behind."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from partnerhub.embedded import port_is_open
from tests.e2e.conftest import ROOT, Hub

pytestmark = pytest.mark.e2e


def _leftovers(hub: Hub) -> list[str]:
    """Processes still running for this hub: PostgreSQL on its data dir, anything on its ports."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if str(hub.data_dir) in cmdline:
            found.append(f"{process.info['pid']} {cmdline}")
    ports = [*hub.ports.values(), hub.broker_port]
    found += [f"something listens on {port}" for port in ports if port_is_open("127.0.0.1", port)]
    return found


def test_a_busy_service_port_is_refused_before_anything_starts(hub_dir: Path) -> None:
    hub = Hub(hub_dir)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", hub.ports["incentives"]))
        holder.listen()
        done = subprocess.run(
            [sys.executable, "-m", "partnerhub.cli", "up", "--data-dir", str(hub_dir)],
            cwd=ROOT, env=hub.env(), capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 1
    assert f"incentives 127.0.0.1:{hub.ports['incentives']} (PARTNERHUB_INCENTIVES_PORT)" in done.stderr
    assert not (hub_dir / "pg").exists()


def test_sigterm_while_starting_stops_everything_with_exit_code_zero(hub_dir: Path) -> None:
    hub = Hub(hub_dir)
    hub.output = hub_dir / "up.out"
    with open(hub.output, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "partnerhub.cli", "up", "--data-dir", str(hub_dir)],
            cwd=ROOT, env=hub.env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    hub.process = process
    try:
        deadline = time.monotonic() + 120
        while "started Tansu" not in hub.text():
            assert process.poll() is None, hub.report()
            assert time.monotonic() < deadline, hub.report()
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(120) == 0, hub.report()
        assert "Partner Hub is up" not in hub.text()
        assert "stopped." in hub.text()
        assert _leftovers(hub) == []
    finally:
        hub.stop()


def test_a_service_that_dies_takes_the_whole_runtime_down_cleanly(hub_dir: Path) -> None:
    hub = Hub(hub_dir)
    hub.start()
    process = hub.process
    assert process is not None
    try:
        children = psutil.Process(process.pid).children()
        [accounts] = [c for c in children if c.cmdline()[-2:] == ["serve", "accounts"]]
        accounts.kill()
        assert process.wait(120) == 1, hub.report()
        assert "accounts exited unexpectedly" in hub.text()
        assert _leftovers(hub) == []
    finally:
        hub.stop()
