"""Helpers for the accounts tests: partners in the real registry, accounts, the replica."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa

ACCOUNT = {"name": "Globex Corporation", "country": "US", "industry": "manufacturing", "classification": "commercial"}
PARTNER = {"name": "Initech Solutions", "country": "DE", "region": "EMEA", "types": ["sales"]}

Tokens = Callable[..., dict[str, str]]


async def new_account(accounts: httpx.AsyncClient, tokens: Tokens, **fields: Any) -> dict[str, Any]:
    response = await accounts.post("/v1/accounts", json={**ACCOUNT, **fields}, headers=tokens())
    assert response.status_code == 201, response.text
    return dict(response.json())


async def new_partner(registry: httpx.AsyncClient, tokens: Tokens, *moves: str) -> dict[str, Any]:
    """A partner registered in the real registry, then moved through the given statuses."""
    response = await registry.post("/v1/partners", json=PARTNER, headers=tokens())
    assert response.status_code == 201, response.text
    partner = dict(response.json())
    for status in moves:
        moved = await registry.post(
            f"/v1/partners/{partner['id']}/status",
            json={"status": status, "reason": f"test: {status}"},
            headers=tokens(),
        )
        assert moved.status_code == 200, moved.text
        partner = dict(moved.json())
    return partner


async def assign(
    accounts: httpx.AsyncClient, tokens: Tokens, account_id: str, partner_id: str | None, **fields: Any
) -> httpx.Response:
    return await accounts.put(
        f"/v1/accounts/{account_id}/owner", json={"partner_id": partner_id, **fields}, headers=tokens()
    )


async def replica(accounts: httpx.AsyncClient, partner_id: str) -> Any:
    """The accounts service's replica row of a registry partner (None until an event or read-through)."""
    db = accounts.app.state.ctx.db  # type: ignore[attr-defined]
    async with db.transaction() as tx:
        result = await tx.session.execute(
            sa.text("SELECT status, source FROM partners WHERE id = :id"), {"id": uuid.UUID(partner_id)}
        )
        return result.one_or_none()




async def preregister(
    accounts: httpx.AsyncClient, tokens: Tokens, caller: str, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    """POST /v1/registrations with a token of the partner `caller`."""
    return await accounts.post("/v1/registrations", json=body, headers={**tokens("partner", caller), **(headers or {})})


async def decide(
    accounts: httpx.AsyncClient, tokens: Tokens, registration_id: str, decision: str, **fields: Any
) -> httpx.Response:
    return await accounts.post(
        f"/v1/registrations/{registration_id}/decision", json={"decision": decision, **fields}, headers=tokens()
    )
