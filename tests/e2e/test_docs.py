"""The walk-throughs in docs/ run as written against one `partnerhub up`, then checked: docs/statements.md (its
bash blocks, in order) and docs/webhooks.md (its receiver saved as receiver.py, its bash blocks in order: the
receiver verified every delivery, and recognised the repeated ones)."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader

from partnerhub.embedded import free_port
from tests.e2e.conftest import ROOT, Api, Hub

pytestmark = pytest.mark.e2e
STATEMENTS = ROOT / "docs" / "statements.md"
WEBHOOKS = ROOT / "docs" / "webhooks.md"
DEFAULT_PORTS = {"registry": 8001, "accounts": 8002, "incentives": 8003, "funds": 8004, "webhooks": 8005}
RECEIVER = "127.0.0.1:9000"


def doc_script(hub: Hub) -> str:
    """The document's bash blocks, with `up`'s default ports replaced by this hub's and `./run` by its path."""
    script = "\n".join(re.findall(r"```bash\n(.*?)```", STATEMENTS.read_text(), re.S))
    for service, port in DEFAULT_PORTS.items():
        script = script.replace(f"localhost:{port}", f"127.0.0.1:{hub.ports[service]}")
    return script.replace("./run ", f"{ROOT}/run ")


async def test_the_statements_walkthrough_runs_as_written(hub: Hub, tmp_path: Path) -> None:
    done = await asyncio.to_thread(
        subprocess.run, ["bash", "-euo", "pipefail", "-c", doc_script(hub) + "\necho PARTNER_ID=$PARTNER_ID"],
        cwd=tmp_path, env=hub.env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    partner_id = re.findall(r"PARTNER_ID=(\S+)", done.stdout)[-1]
    printed = done.stdout.splitlines()
    assert printed[:4] == ["active", "ANALYTICS-TH", "USD", "received"], done.stdout
    assert "['2026-11']" in printed, done.stdout

    api = Api(hub)
    try:
        november = await api.call("GET", "incentives", f"/v1/partners/{partner_id}/statements/2026-11", 200)
        assert november["status"] == "closed" and november["confirmed_by"]
        totals = {t["currency"]: t for t in november["totals"]}
        assert (totals["USD"]["rebate"], totals["USD"]["total"]) == ("145.00", "145.00")
        assert totals["THB"]["eligible_revenue"] == "100000.00"
        lines = (await api.call("GET", "incentives", f"/v1/partners/{partner_id}/statements/2026-11/lines",
                                200))["items"]
        assert [(line["kind"], line["amount"], line["currency"]) for line in lines] == [
            ("original", "141.50", "USD"), ("adjustment", "3.50", "USD")]
        december = await api.call("GET", "incentives", f"/v1/partners/{partner_id}/statements/2026-12", 200)
        assert [(t["currency"], t["adjustments"], t["total"]) for t in december["totals"]] == [
            ("USD", "1.25", "1.25")]
        disputes = (await api.call("GET", "incentives", "/v1/disputes", 200, params={"partner_id": partner_id}))
        assert [(d["status"], d["settlement"]["period"], d["settled_amount"]) for d in disputes["items"]] == [
            ("accepted", "2026-12", "1.25")]
    finally:
        await api.close()

    rows = list(csv.DictReader(io.StringIO((tmp_path / "statement-2026-11.csv").read_text())))
    assert sum(Decimal(row["amount"]) for row in rows) == Decimal("145.00")
    pdf = "\n".join(page.extract_text() for page in PdfReader(tmp_path / "statement-2026-11.pdf").pages)
    assert all(figure in pdf for figure in ("145.00", "141.50", "3.50", partner_id))


def adapted(text: str, hub: Hub, receiver_port: int) -> str:
    """`up`'s default ports replaced by this hub's, the receiver's by a free one, ./run and .venv by their paths."""
    for service, port in DEFAULT_PORTS.items():
        text = text.replace(f"localhost:{port}", f"127.0.0.1:{hub.ports[service]}")
    text = text.replace(RECEIVER, f"127.0.0.1:{receiver_port}").replace('("127.0.0.1", 9000)',
                                                                       f'("127.0.0.1", {receiver_port})')
    return text.replace("./run ", f"{ROOT}/run ").replace(".venv/bin/python ", f"{sys.executable} ")


async def test_the_webhooks_walkthrough_runs_as_written(hub: Hub, tmp_path: Path) -> None:
    text = WEBHOOKS.read_text()
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
