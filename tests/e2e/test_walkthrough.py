"""The README walkthrough, run against `partnerhub up` as separate processes, with exact amounts."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Api, Hub, Kafka, eventually, sale_event

pytestmark = pytest.mark.e2e


def _sale(sale_id: str, partner_id: str, account_id: str, sku: str, amount: str, booked_at: str) -> dict[str, str]:
    return {"sale_id": sale_id, "partner_id": partner_id, "account_id": account_id, "sku": sku,
            "amount": amount, "currency": "USD", "booked_at": booked_at}


async def _wait_for_accrual(api: Api, partner_id: str, sale_id: str, program: str, amount: str) -> dict[str, Any]:
    """Waits for the sale's item under this test's program (programs stack: others may pay too)."""
    seen: list[dict[str, Any]] = []

    async def check() -> dict[str, Any] | None:
        seen[:] = [i for i in await api.accruals(partner_id, sale_id) if i["program_code"] == program]
        if len(seen) == 1 and seen[0]["status"] == "accrued" and seen[0]["amount"] == amount:
            return seen[0]
        return None

    try:
        item: dict[str, Any] = await eventually(check, f"sale {sale_id} accrued at {amount} under {program}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; its accruals: {seen}") from None
    return item


async def _ledger(api: Api, partner_id: str, program: str, sale_id: str | None = None) -> list[dict[str, Any]]:
    return [e for e in await api.ledger(partner_id, sale_id) if e["program_code"] == program]


async def test_walkthrough_reclassification_reprices_later_sales_only(hub: Hub) -> None:
    api = Api(hub)
    run = uuid.uuid4().hex[:8]
    sku, program = f"ANALYTICS-{run}", f"BASE-{run}"
    try:
        partner_id = await api.active_partner("Northwind Partners")
        account_id = await api.owned_account(partner_id, "commercial")
        await api.eligible_product(sku)
        await api.base_rebate(program, commercial="0.05", key="0.08")

        sale_a = _sale(f"A-{run}", partner_id, account_id, sku, "1000.00", "2026-03-05T10:00:00Z")
        sale_b = _sale(f"B-{run}", partner_id, account_id, sku, "2000.00", "2026-03-20T10:00:00Z")
        async with Kafka(hub.bootstrap) as kafka:
            await kafka.send("sales.recorded", account_id, sale_event(sale_a))
            await kafka.send("sales.recorded", account_id, sale_event(sale_b))

            a = await _wait_for_accrual(api, partner_id, sale_a["sale_id"], program, "50.00")
            b = await _wait_for_accrual(api, partner_id, sale_b["sale_id"], program, "100.00")
            assert (a["program_code"], a["base_amount"], a["rate"], a["currency"]) == (
                program, "1000.00", "0.05", "USD")
            assert (b["base_amount"], b["rate"]) == ("2000.00", "0.05")

            await api.reclassify(account_id, "key", "2026-03-10T00:00:00Z")

            b = await _wait_for_accrual(api, partner_id, sale_b["sale_id"], program, "160.00")
            assert (b["base_amount"], b["rate"], b["currency"]) == ("2000.00", "0.08", "USD")
            a = await _wait_for_accrual(api, partner_id, sale_a["sale_id"], program, "50.00")
            assert a["rate"] == "0.05"

            reclassified = [
                json.loads(m.value) for m in await kafka.read_all("accounts.accounts")
                if m.key == account_id.encode() and json.loads(m.value)["type"] == "account.reclassified"
            ]
            assert len(reclassified) == 1
            reclassification_id = reclassified[0]["id"]
            assert reclassified[0]["data"]["effective_from"].startswith("2026-03-10T00:00:00")

        ledger_b = await _ledger(api, partner_id, program, sale_b["sale_id"])
        assert [(e["program_code"], e["amount"]) for e in ledger_b] == [(program, "100.00"), (program, "60.00")]
        original, adjustment = ledger_b
        assert original["cause"] != reclassification_id
        assert adjustment["cause"] == reclassification_id
        assert original["sale_period"] == adjustment["sale_period"] == "2026-03"

        ledger_a = await _ledger(api, partner_id, program, sale_a["sale_id"])
        assert [(e["program_code"], e["amount"]) for e in ledger_a] == [(program, "50.00")]

        history = await api.call("GET", "accounts", f"/v1/accounts/{account_id}/history", 200)
        assert any(entry.get("event_id") == reclassification_id for entry in history), history
    finally:
        await api.close()


async def test_duplicates_are_accrued_once_and_garbage_is_dead_lettered(hub: Hub) -> None:
    api = Api(hub)
    run = uuid.uuid4().hex[:8]
    sku, program = f"SUITE-{run}", f"BASE-{run}"
    try:
        partner_id = await api.active_partner("Contoso Resellers")
        account_id = await api.owned_account(partner_id, "commercial")
        await api.eligible_product(sku)
        await api.base_rebate(program, commercial="0.05", key="0.08")

        twice = _sale(f"C-{run}", partner_id, account_id, sku, "300.00", "2026-03-07T09:00:00Z")
        marker = _sale(f"D-{run}", partner_id, account_id, sku, "400.00", "2026-03-08T09:00:00Z")
        after_garbage = _sale(f"E-{run}", partner_id, account_id, sku, "500.00", "2026-03-09T09:00:00Z")
        event = sale_event(twice)
        async with Kafka(hub.bootstrap) as kafka:
            # The same event delivered twice, then the same sale again under a new event id.
            await kafka.send("sales.recorded", account_id, event)
            await kafka.send("sales.recorded", account_id, event)
            await kafka.send("sales.recorded", account_id, sale_event(twice))
            # Same key, same partition: once the marker is accrued, every copy before it was consumed.
            await kafka.send("sales.recorded", account_id, sale_event(marker))
            await _wait_for_accrual(api, partner_id, marker["sale_id"], program, "20.00")
            await _wait_for_accrual(api, partner_id, twice["sale_id"], program, "15.00")
            ledger = await _ledger(api, partner_id, program, twice["sale_id"])
            assert [e["amount"] for e in ledger] == ["15.00"]

            await kafka.send("sales.recorded", account_id, b"not json")
            await kafka.send("sales.recorded", account_id, sale_event(after_garbage))
            await _wait_for_accrual(api, partner_id, after_garbage["sale_id"], program, "25.00")

            async def dead_lettered() -> list[Any]:
                return [m for m in await kafka.read_all("sales.recorded.dlq") if m.value == b"not json"]

            [dead] = await eventually(dead_lettered, "the garbage message in sales.recorded.dlq")
            dlq_headers = {k: bytes(v).decode() for k, v in dead.headers}
            assert dlq_headers["dlq.reason"]
            assert dlq_headers["dlq.topic"] == "sales.recorded"
            assert dead.key == account_id.encode()

        totals = await _ledger(api, partner_id, program)
        assert sorted(e["amount"] for e in totals) == ["15.00", "20.00", "25.00"]
    finally:
        await api.close()
