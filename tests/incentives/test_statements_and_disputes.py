"""Statement lines, CSV and PDF, confirmation and disputes (CONTRACT §5 v2), over the broker and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from pypdf import PdfReader

from services.incentives.domain import next_period
from tests.conftest import Infrastructure, eventually
from tests.incentives.support import World, account_data
from tests.registry.support import EventLog

LINE_FIELDS = {"entry_id", "kind", "sale_id", "program_code", "amount", "currency", "sale_period", "cause",
               "explanation", "posted_at"}


@pytest.fixture(scope="module")
async def statement_events(infrastructure: Infrastructure) -> AsyncIterator[EventLog]:
    log = EventLog(infrastructure.bootstrap_servers, ["incentives.statements"])
    await log.start()
    yield log
    await log.stop()


async def open_period(incentives: Any, tokens: Any) -> str:
    """A month still open, after every period closed so far: closing is one prefix for the whole ledger, so this
    module books its sales from 2025-05 on, after the other statement tests' months."""
    closed = (await incentives.post("/v1/periods/1990-01/close", headers=tokens())).json()["closed_through"]
    return max("2025-05", next_period(closed))


async def lines(incentives: Any, tokens: Any, partner_id: str, period: str, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await incentives.get(f"/v1/partners/{partner_id}/statements/{period}/lines",
                                    params={**params, **({"cursor": cursor} if cursor else {})},
                                    headers=tokens("partner", partner_id))
        assert page.status_code == 200, page.text
        found += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return found


def events_of(log: EventLog, type_: str, subject: str) -> list[dict[str, Any]]:
    bodies = [json.loads(m.value) for m in log.messages]
    return [b for b in bodies if b["type"] == type_ and b["subject"] == subject]


async def priced_world(incentives: Any, publish: Any, tokens: Any, period: str) -> tuple[World, str, str]:
    """A partner with two sales in `period`, the second repriced by a reclassification while the period is open."""
    world = await World(incentives, publish, tokens).setup(valid_from="2024-01-01T00:00:00Z")
    first, second = f"SL1-{uuid.uuid4()}", f"SL2-{uuid.uuid4()}"
    await world.publish_sale(world.sale(first, "1000.00", f"{period}-10T10:00:00Z"))
    await world.publish_sale(world.sale(second, "333.33", f"{period}-20T10:00:00Z"))
    await world.amount_becomes(first, "50.00")
    await world.amount_becomes(second, "16.67")
    await publish("accounts.accounts", "account.reclassified", world.account_id, {
        **account_data(world.account_id, "key", world.partner_id),
        "from": "commercial", "to": "key", "effective_from": f"{period}-15T00:00:00Z",
    })
    await world.amount_becomes(second, "26.67")
    return world, first, second


async def test_lines_sum_to_the_total_and_the_closed_statement_downloads_as_csv_and_pdf_and_is_confirmed_once(
    incentives, publish, tokens, statement_events
) -> None:
    period = await open_period(incentives, tokens)
    world, first, second = await priced_world(incentives, publish, tokens, period)
    partner = tokens("partner", world.partner_id)
    url = f"/v1/partners/{world.partner_id}/statements/{period}"

    found = await lines(incentives, tokens, world.partner_id, period, limit=2)
    assert all(set(line) == LINE_FIELDS for line in found)
    assert [(line["kind"], line["sale_id"], line["amount"]) for line in found] == [
        ("original", first, "50.00"), ("original", second, "16.67"), ("adjustment", second, "10.00")]
    assert "repriced" in found[2]["explanation"] and found[2]["cause"]
    statement = (await incentives.get(url, headers=partner)).json()
    assert statement["status"] == "open" and statement["confirmed_at"] is None
    assert [t["total"] for t in statement["totals"]] == ["76.67"]
    assert sum(Decimal(line["amount"]) for line in found) == Decimal("76.67")
    assert await lines(incentives, tokens, world.partner_id, period, currency="EUR") == []

    still_open = await incentives.post(f"{url}/confirmation", headers=partner)
    assert still_open.status_code == 409 and "still open" in still_open.json()["detail"]

    assert (await incentives.post(f"/v1/periods/{period}/close", headers=tokens())).status_code == 200
    closed = (await incentives.get(url, headers=partner)).json()
    assert closed["status"] == "closed" and closed["totals"] == statement["totals"]
    announced = await eventually(lambda: events_of(statement_events, "statement.closed", period) or None)
    mine = [e for e in announced if e["data"]["partner_id"] == world.partner_id]
    assert len(mine) == 1 and mine[0]["data"]["totals"][0]["total"] == "76.67"

    exported = await incentives.get(url, headers={**partner, "Accept": "text/csv"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert exported.headers["content-disposition"] == (
        f'attachment; filename="statement-{world.partner_id}-{period}.csv"')
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["kind"], r["sale_id"], r["amount"]) for r in rows] == [
        (line["kind"], line["sale_id"], line["amount"]) for line in found]
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal(closed["totals"][0]["total"])

    printed = await incentives.get(url, headers={**partner, "Accept": "application/pdf"})
    assert printed.status_code == 200 and printed.headers["content-type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(printed.content)).pages)
    assert period in text and world.partner_id in text and "closed" in text
    assert all(figure in text for figure in ("76.67", "50.00", "16.67", "10.00", "1333.33"))
    assert "not confirmed" in text

    assert (await incentives.post(f"{url}/confirmation", headers=tokens())).status_code == 403
    confirmed = await incentives.post(f"{url}/confirmation", headers=partner)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["confirmed_at"] and confirmed.json()["confirmed_by"]
    again = await incentives.post(f"{url}/confirmation", headers=partner)
    assert again.status_code == 200 and again.json() == confirmed.json()
    await eventually(lambda: [e for e in events_of(statement_events, "statement.confirmed", period)
                              if e["data"]["partner_id"] == world.partner_id] or None)
    assert len([e for e in events_of(statement_events, "statement.confirmed", period)
                if e["data"]["partner_id"] == world.partner_id]) == 1
    reprinted = await incentives.get(url, headers={**partner, "Accept": "application/pdf"})
    assert "not confirmed" not in "".join(p.extract_text() for p in PdfReader(io.BytesIO(reprinted.content)).pages)

    other = tokens("partner", str(uuid.uuid4()))
    assert (await incentives.get(f"{url}/lines", headers=other)).status_code == 403
    assert (await incentives.get(url, headers={**other, "Accept": "text/csv"})).status_code == 403


async def test_a_dispute_is_settled_once_into_the_earliest_open_period_and_the_closed_statement_never_moves(
    incentives, publish, tokens, statement_events
) -> None:
    period = await open_period(incentives, tokens)
    world, _, second = await priced_world(incentives, publish, tokens, period)
    assert (await incentives.post(f"/v1/periods/{period}/close", headers=tokens())).status_code == 200
    partner = tokens("partner", world.partner_id)
    url = f"/v1/partners/{world.partner_id}/statements/{period}"
    frozen = (await incentives.get(url, headers=partner)).json()
    frozen_csv = (await incentives.get(url, headers={**partner, "Accept": "text/csv"})).text
    claim = {"partner_id": world.partner_id, "period": period, "sale_id": second, "program_code": world.program,
             "currency": "USD", "claimed_amount": "5.00", "reason": "the key rate applied from the 10th"}

    opened = await incentives.post("/v1/disputes", json=claim, headers=partner)
    assert opened.status_code == 201, opened.text
    dispute = opened.json()
    assert dispute["status"] == "open" and dispute["claimed_amount"] == "5.00" and dispute["settlement"] is None
    twice = await incentives.post("/v1/disputes", json=claim, headers=partner)
    assert twice.status_code == 409 and dispute["id"] in twice.json()["detail"]
    not_mine = await incentives.post("/v1/disputes", json={**claim, "sale_id": f"NOPE-{uuid.uuid4()}"},
                                     headers=partner)
    assert not_mine.status_code == 422
    stranger = tokens("partner", str(uuid.uuid4()))
    assert (await incentives.post("/v1/disputes", json=claim, headers=stranger)).status_code == 403
    assert (await incentives.get(f"/v1/disputes/{dispute['id']}", headers=stranger)).status_code == 404
    assert (await incentives.post(f"/v1/disputes/{dispute['id']}/decision", headers=partner,
                                  json={"decision": "reject", "reason": "no"})).status_code == 403
    listed = (await incentives.get("/v1/disputes", params={"status": "open"}, headers=partner)).json()["items"]
    assert [d["id"] for d in listed] == [dispute["id"]]

    accepted = await incentives.post(f"/v1/disputes/{dispute['id']}/decision", headers=tokens(),
                                     json={"decision": "accept", "amount": "4.00", "reason": "agreed at 4.00"})
    assert accepted.status_code == 200, accepted.text
    settled = accepted.json()
    following = next_period(period)
    assert (settled["status"], settled["decision"], settled["settled_amount"]) == ("accepted", "accept", "4.00")
    assert settled["settlement"]["period"] == following and settled["settlement"]["amount"] == "4.00"
    again = await incentives.post(f"/v1/disputes/{dispute['id']}/decision", headers=tokens(),
                                  json={"decision": "accept", "amount": "4.00", "reason": "twice"})
    assert again.status_code == 409 and "accepted" in again.json()["detail"]
    assert (await incentives.post(f"/v1/disputes/{dispute['id']}/withdraw", headers=partner)).status_code == 409

    [line] = [line for line in await lines(incentives, tokens, world.partner_id, following)
              if line["kind"] == "dispute_settlement"]
    assert (line["amount"], line["cause"], line["sale_id"], line["sale_period"]) == (
        "4.00", dispute["id"], second, period)
    assert line["entry_id"] == settled["settlement"]["entry_id"]
    later = (await incentives.get(f"/v1/partners/{world.partner_id}/statements/{following}", headers=partner)).json()
    assert later["totals"] == [{"currency": "USD", "eligible_revenue": "0.00", "rebate": "0.00", "bip_bonus": "0.00",
                                "adjustments": "4.00", "total": "4.00"}]
    assert (await incentives.get(url, headers=partner)).json() == frozen
    assert (await incentives.get(url, headers={**partner, "Accept": "text/csv"})).text == frozen_csv
    accrued = await world.accruals(second)
    assert [a["amount"] for a in accrued] == ["26.67"], "a settlement is not an accrual"

    whole = {**claim, "sale_id": None, "program_code": None, "claimed_amount": "-1.00", "reason": "double counted"}
    withdrawn_one = (await incentives.post("/v1/disputes", json=whole, headers=partner)).json()
    withdrawn = await incentives.post(f"/v1/disputes/{withdrawn_one['id']}/withdraw", headers=partner)
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    rejected_one = await incentives.post("/v1/disputes", json=whole, headers=tokens())
    assert rejected_one.status_code == 201, "a withdrawn dispute no longer blocks a new one"
    rejected = await incentives.post(f"/v1/disputes/{rejected_one.json()['id']}/decision", headers=tokens(),
                                     json={"decision": "reject", "amount": None, "reason": "the statement is right"})
    assert rejected.json()["status"] == "rejected" and rejected.json()["settlement"] is None
    mine = (await incentives.get("/v1/disputes", params={"partner_id": world.partner_id},
                                 headers=tokens())).json()["items"]
    assert {d["status"] for d in mine} == {"accepted", "withdrawn", "rejected"}

    resolved = await eventually(lambda: events_of(statement_events, "dispute.resolved", dispute["id"]) or None)
    assert resolved[0]["data"]["settlement"]["amount"] == "4.00"
    assert events_of(statement_events, "dispute.opened", dispute["id"])[0]["data"]["status"] == "open"
