"""docs/statements.md, run as written (its bash blocks, in order) against `partnerhub up`, then checked."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.e2e.conftest import ROOT, Api, Hub

pytestmark = pytest.mark.e2e
DOC = ROOT / "docs" / "statements.md"
DEFAULT_PORTS = {"registry": 8001, "accounts": 8002, "incentives": 8003, "funds": 8004}


def doc_script(hub: Hub) -> str:
    """The document's bash blocks, with `up`'s default ports replaced by this hub's and `./run` by its path."""
    script = "\n".join(re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S))
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
