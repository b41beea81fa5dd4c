"""`partnerhub up` stopped mid-flow and started again on the same data: nothing lost, nothing counted twice."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Api, Hub, Kafka, eventually

pytestmark = pytest.mark.e2e

RECLASSIFIED_FROM = "2026-03-10T00:00:00Z"
# sale -> (booked_at, amount, accrual at the commercial rate 0.05, accrual at the key rate 0.08)
SALES = {
    "S1": ("2026-03-02T08:00:00Z", "100.00", "5.00", None),
    "S2": ("2026-03-06T12:00:00Z", "250.00", "12.50", None),
    "S3": ("2026-03-09T23:59:59Z", "999.99", "50.00", None),
    "S4": ("2026-03-10T00:00:00Z", "1000.00", "50.00", "80.00"),
    "S5": ("2026-03-12T15:30:00Z", "333.33", "16.67", "26.67"),
    "S6": ("2026-03-25T09:00:00Z", "40.00", "2.00", "3.20"),
}


async def _post_sale(api: Api, sale_id: str, partner_id: str, account_id: str, sku: str, booked_at: str,
                     amount: str) -> None:
    await api.call("POST", "incentives", "/v1/sales", 202, role="system", json={
        "sale_id": sale_id, "partner_id": partner_id, "account_id": account_id, "sku": sku,
        "amount": amount, "currency": "USD", "booked_at": booked_at,
    })


async def _amounts(api: Api, partner_id: str, program: str) -> dict[str, list[tuple[str, str]]]:
    """Each sale's ledger under this test's program: [(amount, cause), ...] in posting order."""
    by_sale: dict[str, list[tuple[str, str]]] = {}
    for entry in await api.ledger(partner_id):
        if entry["program_code"] == program:
            by_sale.setdefault(entry["sale_id"], []).append((entry["amount"], entry["cause"]))
    return by_sale


async def _wait_until_accrued(api: Api, partner_id: str, program: str, expected: dict[str, str]) -> None:
    async def check() -> bool:
        for sale_id, amount in expected.items():
            items = [i for i in await api.accruals(partner_id, sale_id) if i["program_code"] == program]
            if [(i["status"], i["amount"]) for i in items] != [("accrued", amount)]:
                return False
        return True

    await eventually(check, f"accruals {expected}", within=90)


def _sale_ids(run: str) -> dict[str, str]:
    return {name: f"{name}-{run}" for name in SALES}


async def test_restart_mid_flow_loses_nothing_and_counts_nothing_twice(hub_dir: Path) -> None:
    run = uuid.uuid4().hex[:8]
    sku, program = f"PLATFORM-{run}", f"BASE-{run}"
    ids = _sale_ids(run)

    first = Hub(hub_dir)
    first.start()
    api = Api(first)
    try:
        partner_id = await api.active_partner("Fabrikam Channel")
        account_id = await api.owned_account(partner_id, "commercial")
        await api.eligible_product(sku)
        await api.base_rebate(program, commercial="0.05", key="0.08")
        for name, (booked_at, amount, _, _) in SALES.items():
            await _post_sale(api, ids[name], partner_id, account_id, sku, booked_at, amount)
    finally:
        await api.close()
        # Mid-flow: the events these calls caused are still on their way between the services.
        code = first.stop()
    assert code == 0, first.report()

    second = Hub(hub_dir)  # new ports, a fresh, empty broker; the same PostgreSQL data
    second.start()
    api = Api(second)
    try:
        partner = await api.call("GET", "registry", f"/v1/partners/{partner_id}", 200)
        assert partner["status"] == "active"
        await _wait_until_accrued(api, partner_id, program, {ids[n]: s[2] for n, s in SALES.items()})

        await api.reclassify(account_id, "key", RECLASSIFIED_FROM)
        marker = f"M1-{run}"
        await _post_sale(api, marker, partner_id, account_id, sku, "2026-03-28T10:00:00Z", "500.00")
        await _wait_until_accrued(api, partner_id, program, {
            **{ids[n]: (s[3] or s[2]) for n, s in SALES.items()}, marker: "40.00",
        })

        async with Kafka(second.bootstrap) as kafka:
            reclassified = [
                json.loads(m.value) for m in await kafka.read_all("accounts.accounts")
                if m.key == account_id.encode() and json.loads(m.value)["type"] == "account.reclassified"
            ]
        assert len(reclassified) == 1
        cause = reclassified[0]["id"]

        expected = _expected_ledger(ids, cause)
        ledger = await _amounts(api, partner_id, program)
        # Posted right after the reclassification: priced at either rate first, at the key rate in the end.
        assert _total(ledger.pop(marker)) == Decimal("40.00")
        _assert_ledger(ledger, expected)
    finally:
        await api.close()
        code = second.stop()
    assert code == 0, second.report()

    # Once more: the kept outbox, reclassification and adjustments included, is replayed into a new broker.
    third = Hub(hub_dir)
    third.start()
    api = Api(third)
    try:
        late = f"M2-{run}"
        await _post_sale(api, late, partner_id, account_id, sku, "2026-03-29T10:00:00Z", "10.00")
        # Changes made now follow the replayed events in their partitions: once a sale shows both,
        # every replay before them has been consumed.
        await api.reclassify(account_id, "commercial", "2026-04-01T00:00:00Z")
        await api.call("PUT", "registry", f"/v1/partners/{partner_id}/tier", 200,
                       json={"tier": "gold", "effective_from": "2026-04-15T00:00:00Z"})
        probe = f"M3-{run}"
        await _post_sale(api, probe, partner_id, account_id, sku, "2026-04-20T10:00:00Z", "100.00")

        async def probe_priced_with_both_changes() -> bool:
            items = [i for i in await api.accruals(partner_id, probe) if i["program_code"] == program]
            return [(i["amount"], i["classification"], i["tier"]) for i in items] == [("5.00", "commercial", "gold")]

        await eventually(probe_priced_with_both_changes, "the probe sale priced as commercial, gold", within=90)
        await _wait_until_accrued(api, partner_id, program, {late: "0.80", marker: "40.00"})
        ledger = await _amounts(api, partner_id, program)
        assert _total(ledger.pop(probe)) == Decimal("5.00")
        assert _total(ledger.pop(marker)) == Decimal("40.00")
        expected[late] = [("0.80", None)]
        _assert_ledger(ledger, expected)
    finally:
        await api.close()
        code = third.stop()
    assert code == 0, third.report()


def _total(entries: list[tuple[str, str]]) -> Decimal:
    return sum((Decimal(amount) for amount, _ in entries), Decimal("0"))


def _expected_ledger(ids: dict[str, str], cause: str) -> dict[str, list[tuple[str, str | None]]]:
    expected: dict[str, list[tuple[str, str | None]]] = {}
    for name, (_, _, commercial, key) in SALES.items():
        entries: list[tuple[str, str | None]] = [(commercial, None)]
        if key is not None:
            entries.append((str(Decimal(key) - Decimal(commercial)), cause))
        expected[ids[name]] = entries
    return expected


def _assert_ledger(actual: dict[str, list[tuple[str, str]]], expected: dict[str, list[tuple[str, Any]]]) -> None:
    """Exactly the expected entries per sale; a cause of None means 'not the reclassification'."""
    assert sorted(actual) == sorted(expected), actual
    for sale_id, entries in expected.items():
        got = actual[sale_id]
        assert [amount for amount, _ in got] == [amount for amount, _ in entries], (sale_id, got)
        for (_, got_cause), (_, want_cause) in zip(got, entries, strict=True):
            if want_cause is not None:
                assert got_cause == want_cause, (sale_id, got)
            else:
                assert got_cause not in {e[1] for e in entries if e[1]}, (sale_id, got)
