"""Helpers for the funds tests: funds, requests, the accrual events incentives publishes, the database."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from partnerhub.sweeps import Sweep, run_sweep_once
from tests.conftest import eventually

Tokens = Callable[..., dict[str, str]]
OPEN_FROM = "2020-01-01T00:00:00Z"
OPEN_TO = "2100-01-01T00:00:00Z"


def code(prefix: str = "MDF") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def partner() -> str:
    return str(uuid.uuid4())


def days_ahead(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).date().isoformat()


async def new_fund(funds: httpx.AsyncClient, tokens: Tokens, **fields: Any) -> dict[str, Any]:
    body = {
        "code": code(), "kind": "mdf", "currency": "USD", "budget": "10000.00", "valid_from": OPEN_FROM,
        "valid_to": OPEN_TO, "accrual_rate": None, "per_partner_limit": None, **fields,
    }
    response = await funds.post("/v1/funds", json=body, headers=tokens())
    assert response.status_code == 201, response.text
    return dict(response.json())


def request_body(partner_id: str, amount: str, **fields: Any) -> dict[str, Any]:
    return {
        "partner_id": partner_id, "amount": amount, "activity": "Joint webinar series",
        "planned_start": days_ahead(30), "planned_end": days_ahead(40), **fields,
    }


async def apply(
    funds: httpx.AsyncClient, tokens: Tokens, fund_code: str, partner_id: str, amount: str, **fields: Any
) -> httpx.Response:
    return await funds.post(
        f"/v1/funds/{fund_code}/requests", json=request_body(partner_id, amount, **fields),
        headers=tokens("partner", partner_id),
    )


async def approved_request(
    funds: httpx.AsyncClient, tokens: Tokens, fund_code: str, partner_id: str, amount: str
) -> dict[str, Any]:
    response = await apply(funds, tokens, fund_code, partner_id, amount)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "approved", response.json()
    return dict(response.json())


async def fund(funds: httpx.AsyncClient, tokens: Tokens, fund_code: str) -> dict[str, Any]:
    response = await funds.get(f"/v1/funds/{fund_code}", headers=tokens())
    assert response.status_code == 200, response.text
    return dict(response.json())


async def balance(funds: httpx.AsyncClient, tokens: Tokens, partner_id: str, fund_code: str) -> dict[str, Any]:
    response = await funds.get(f"/v1/partners/{partner_id}/fund-balances", headers=tokens("partner", partner_id))
    assert response.status_code == 200, response.text
    found = [b for b in response.json()["items"] if b["fund_code"] == fund_code]
    return dict(found[0]) if found else {}


async def ledger(funds: httpx.AsyncClient, tokens: Tokens, partner_id: str, fund_code: str) -> list[dict[str, Any]]:
    response = await funds.get(
        f"/v1/partners/{partner_id}/fund-ledger", params={"fund_code": fund_code, "limit": 500}, headers=tokens()
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def earned_becomes(
    funds: httpx.AsyncClient, tokens: Tokens, partner_id: str, fund_code: str, earned: str
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = await balance(funds, tokens, partner_id, fund_code)
        return found if found.get("earned") == earned else None

    try:
        result: dict[str, Any] = await eventually(check)
    except AssertionError as exc:
        now = await balance(funds, tokens, partner_id, fund_code)
        raise AssertionError(f"earned never became {earned} in {fund_code}: {now}") from exc
    return result


def accrual(
    sale_id: str, partner_id: str, amount: str, booked_at: str = "2026-03-05T10:00:00Z", *,
    status: str = "accrued", currency: str = "USD", cause: str | None = None,
) -> dict[str, Any]:
    """accrual.* data exactly as incentives' accrual_event() builds it: the sale's whole current state."""
    eligible = status == "accrued"
    data: dict[str, Any] = {
        "sale_id": sale_id, "partner_id": partner_id, "account_id": str(uuid.uuid4()), "sku": "SKU-STORAGE",
        "booked_at": booked_at, "currency": currency, "amount": amount, "status": status, "eligible": eligible,
        "items": [
            {"program_code": "BASE-2026", "amount": "50.00" if eligible else "0.00", "status": status},
            {"program_code": "CAP-CLOUD", "amount": "20.00" if eligible else "0.00", "status": status},
        ],
    }
    if cause is not None:
        data["cause"] = cause
    return data


async def run_sql(funds: httpx.AsyncClient, statement: str, **params: Any) -> list[Any]:
    db = funds.app.state.ctx.db  # type: ignore[attr-defined]
    async with db.transaction() as tx:
        result = await tx.session.execute(sa.text(statement), params)
        return list(result.all()) if result.returns_rows else []


async def sweep(funds: httpx.AsyncClient, name: str, job: Sweep) -> int | None:
    return await run_sweep_once(funds.app.state.ctx.db, name, job)  # type: ignore[attr-defined]
