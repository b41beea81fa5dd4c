"""Registry → accounts → incentives → funds over Kafka, as separate processes: earned balances follow."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import Api, Hub, eventually

pytestmark = pytest.mark.e2e


async def _balance(api: Api, partner_id: str, fund: str) -> dict[str, Any] | None:
    page = await api.call("GET", "funds", f"/v1/partners/{partner_id}/fund-balances", 200)
    return next((b for b in page["items"] if b["fund_code"] == fund), None)


async def _earned_becomes(api: Api, partner_id: str, fund: str, earned: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        balance = await _balance(api, partner_id, fund)
        return balance if balance is not None and balance["earned"] == earned else None

    found: dict[str, Any] = await eventually(check, f"{fund} earned {earned} for {partner_id}")
    return found


async def test_account_changes_move_earned_marketing_funds_end_to_end(hub: Hub) -> None:
    api = Api(hub)
    run = uuid.uuid4().hex[:8]
    sku, program, fund = f"FUNDS-{run}", f"BASE-{run}", f"MDF-{run}"
    try:
        partner_id = await api.active_partner("Contoso Channel")
        rival_id = await api.active_partner("Fabrikam Resellers")
        account_id = await api.owned_account(partner_id, "commercial")
        await api.eligible_product(sku)
        await api.base_rebate(program)
        await api.call("POST", "funds", "/v1/funds", 201, json={
            "code": fund, "kind": "mdf", "currency": "USD", "budget": "100000.00",
            "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2027-01-01T00:00:00Z",
            "accrual_rate": "0.10", "per_partner_limit": None,
        })
        for sale_id, amount, booked_at in (("A", "1000.00", "2026-03-05T10:00:00Z"),
                                           ("B", "2000.00", "2026-03-20T10:00:00Z")):
            await api.call("POST", "incentives", "/v1/sales", 202, role="system", json={
                "sale_id": f"{sale_id}-{run}", "partner_id": partner_id, "account_id": account_id, "sku": sku,
                "amount": amount, "currency": "USD", "booked_at": booked_at,
            })
        await _earned_becomes(api, partner_id, fund, "300.00")

        # A reclassification changes rates, not eligibility (CONTRACT §5): B is repriced, earned stays.
        await api.reclassify(account_id, "key", "2026-03-10T00:00:00Z")

        async def repriced() -> bool:
            items = await api.accruals(partner_id, f"B-{run}")
            return any(i["program_code"] == program and i["amount"] == "160.00" for i in items)

        await eventually(repriced, "B repriced at the key rate")
        assert (await _balance(api, partner_id, fund) or {})["earned"] == "300.00"

        # The account passes to another partner from 03-10: B is now a channel conflict for the seller.
        await api.call("PUT", "accounts", f"/v1/accounts/{account_id}/owner", 200,
                       json={"partner_id": rival_id, "effective_from": "2026-03-10T00:00:00Z"})
        balance = await _earned_becomes(api, partner_id, fund, "100.00")
        assert balance["available"] == "100.00"

        start = datetime.now(UTC).date() + timedelta(days=30)
        request = await api.call("POST", "funds", f"/v1/funds/{fund}/requests", 201, json={
            "partner_id": partner_id, "amount": "80.00", "activity": "Webinar",
            "planned_start": f"{start}T00:00:00Z", "planned_end": f"{start + timedelta(days=2)}T00:00:00Z",
        })
        assert request["status"] == "approved"
        balance = await _balance(api, partner_id, fund)
        assert balance is not None and (balance["committed"], balance["available"]) == ("80.00", "20.00")
    finally:
        await api.close()
