"""Helpers for the webhooks tests: subscriptions, public events as their producers publish them, the log."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import Publish, eventually
from tests.webhooks.receiver import Receiver

Tokens = Callable[..., dict[str, str]]


def new_path() -> str:
    return f"/hooks/{uuid.uuid4()}"


async def subscribe(client: httpx.AsyncClient, headers: dict[str, str], url: str, event_types: list[str],
                    partner_id: uuid.UUID | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url, "event_types": event_types}
    if partner_id is not None:
        body["partner_id"] = str(partner_id)
    answer = await client.post("/v1/webhooks", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def accrual(publish: Publish, partner_id: uuid.UUID, type_: str = "accrual.recorded") -> str:
    sale_id = f"S-{uuid.uuid4()}"
    return await publish("incentives.accruals", type_, str(partner_id), {
        "sale_id": sale_id, "partner_id": str(partner_id), "account_id": str(uuid.uuid4()), "sku": "SKU-1",
        "booked_at": "2026-11-02T10:00:00Z", "currency": "USD", "amount": "1000.00", "status": "accrued",
        "eligible": True, "items": [{"program_code": "BASE", "amount": "50.00", "currency": "USD",
                                     "status": "accrued"}],
    }, subject=sale_id, source="incentives")


async def deliveries(client: httpx.AsyncClient, headers: dict[str, str], subscription_id: str,
                     status: str | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        answer = await client.get(f"/v1/webhooks/{subscription_id}/deliveries", params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        found += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def arrived(receiver: Receiver, path: str, count: int, within: float = 90) -> None:
    await eventually(lambda: len(receiver.at(path)) >= count, within=within)


def event_ids(receiver: Receiver, path: str) -> list[str]:
    return [r.headers["webhook-id"] for r in receiver.at(path)]
