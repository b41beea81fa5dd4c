"""A small world for incentives tests: upstream events published to the broker, REST calls in-process."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import Publish, eventually

T0 = "2026-01-01T00:00:00Z"


def partner_data(partner_id: str, status: str = "active", tier: str = "registered") -> dict[str, Any]:
    return {"id": partner_id, "name": "Acme", "country": "DE", "region": "EMEA", "types": ["sales"],
            "tier": tier, "status": status, "parent_partner_id": None, "certifications": []}


def account_data(account_id: str, classification: str, owner: str | None) -> dict[str, Any]:
    return {"id": account_id, "name": "Customer", "country": "DE", "industry": "retail",
            "classification": classification, "owner_partner_id": owner}


class World:
    """A partner, an account owned by it, an eligible product and a two-rate base program."""

    def __init__(self, client: httpx.AsyncClient, publish: Publish, tokens: Any) -> None:
        self.client, self.publish, self.tokens = client, publish, tokens
        self.partner_id = str(uuid.uuid4())
        self.account_id = str(uuid.uuid4())
        self.sku = f"SKU-{uuid.uuid4().hex[:8]}"
        self.program = f"BASE-{uuid.uuid4().hex[:8]}"
        # Programs stack across the whole test database: each world's rules name its own category.
        self.category = f"cat-{uuid.uuid4().hex[:8]}"

    async def setup(self, program: bool = True, valid_from: str = T0) -> World:
        await self.publish("registry.partners", "partner.registered", self.partner_id,
                           partner_data(self.partner_id, status="pending"))
        await self.publish("accounts.accounts", "account.created", self.account_id,
                           account_data(self.account_id, "commercial", self.partner_id))
        product = await self.client.put(
            f"/v1/products/{self.sku}",
            json={"name": "Storage", "category": self.category, "rebate_eligible": True, "standalone_software": False},
            headers=self.tokens(),
        )
        assert product.status_code == 201, product.text
        if program:
            await self.create_program(self.program, [("commercial", "0.05"), ("key", "0.08")], valid_from=valid_from)
        return self

    async def create_program(self, code: str, rates: list[tuple[str, str]], **extra: Any) -> httpx.Response:
        response = await self.client.post("/v1/programs", headers=self.tokens(), json={
            "code": code, "name": "Base rebate", "kind": "base_rebate", "valid_from": T0, "valid_to": None,
            "rules": [{"classification": c, "tier": "*", "category": self.category, "rate": r} for c, r in rates],
        } | extra)
        assert response.status_code == 201, response.text
        return response

    def sale(self, sale_id: str, amount: str, booked_at: str, **overrides: Any) -> dict[str, Any]:
        return {"sale_id": sale_id, "partner_id": self.partner_id, "account_id": self.account_id,
                "sku": self.sku, "amount": amount, "currency": "USD", "booked_at": booked_at, **overrides}

    async def publish_sale(self, sale: dict[str, Any], event_id: str | None = None) -> str:
        return await self.publish("sales.recorded", "sale.recorded", sale["account_id"], sale,
                                  event_id=event_id, subject=sale["sale_id"])

    async def accruals(self, sale_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/v1/partners/{self.partner_id}/accruals",
                                         params={"sale_id": sale_id}, headers=self.tokens())
        assert response.status_code == 200, response.text
        return response.json()["items"]

    async def ledger(self, sale_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/v1/partners/{self.partner_id}/ledger",
                                         params={"sale_id": sale_id}, headers=self.tokens())
        assert response.status_code == 200, response.text
        return response.json()["items"]

    async def amount_becomes(self, sale_id: str, amount: str, status: str = "accrued") -> list[dict[str, Any]]:
        async def check() -> list[dict[str, Any]] | None:
            items = await self.accruals(sale_id)
            ok = items and [i["amount"] for i in items] == [amount] and items[0]["status"] == status
            return items if ok else None

        try:
            result: list[dict[str, Any]] = await eventually(check)
        except AssertionError as exc:
            raise AssertionError(f"{sale_id} never became {amount} {status}: {await self.accruals(sale_id)}") from exc
        return result
