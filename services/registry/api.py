"""Registry routes (CONTRACT §3)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from partnerhub.auth import Admin, AdminOrSystem, Anyone, ensure_partner_scope
from partnerhub.http import (
    Cursor,
    IdempotencyKey,
    IfMatch,
    Limit,
    Page,
    decode_cursor,
    encode_cursor,
    idempotent,
    json_response,
)
from partnerhub.service import Ctx
from services.registry import usecases
from services.registry.domain import PartnerType, Status, Tier
from services.registry.repository import PartnerRepository
from services.registry.schemas import CertificationIn, HistoryEntry, Partner, PartnerIn, StatusIn, TierIn

router = APIRouter(prefix="/partners", tags=["partners"])


def _partner(row: dict[str, object]) -> Partner:
    return Partner.model_validate(row)


@router.post("", status_code=201, response_model=Partner, summary="Register a partner (status pending)")
async def register_partner(
    body: PartnerIn, request: Request, ctx: Ctx, principal: Admin, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def operation(tx):  # type: ignore[no-untyped-def]
        partner, version = await usecases.register_partner(tx, principal, body)
        return _partner(partner), version

    return await idempotent(ctx.db, request, idempotency_key, body, operation)


@router.get("", response_model=Page[Partner], summary="List partners")
async def list_partners(
    ctx: Ctx,
    principal: AdminOrSystem,
    type: PartnerType | None = None,
    tier: Tier | None = None,
    status: Status | None = None,
    country: str | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[Partner]:
    async with ctx.db.transaction() as tx:
        rows = await PartnerRepository(tx.session).search(
            type_=type, tier=tier, status=status, country=country,
            after=usecases.since(decode_cursor(cursor)), limit=limit + 1,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return Page[Partner](
        items=[_partner(r) for r in rows],
        next_cursor=encode_cursor(last["created_at"].isoformat(), str(last["id"])) if more and last else None,
    )


@router.get("/{partner_id}", response_model=Partner, summary="Get a partner")
async def get_partner(partner_id: uuid.UUID, ctx: Ctx, principal: Anyone) -> JSONResponse:
    ensure_partner_scope(principal, partner_id)
    async with ctx.db.transaction() as tx:
        partner = await usecases.get_partner(tx, partner_id)
    return json_response(_partner(partner), etag_version=partner["version"])


@router.post("/{partner_id}/status", response_model=Partner, summary="Change a partner's status")
async def change_status(
    partner_id: uuid.UUID, body: StatusIn, ctx: Ctx, principal: Admin, if_match: IfMatch = None
) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        partner, version = await usecases.change_status(tx, principal, partner_id, body, if_match)
    return json_response(_partner(partner), etag_version=version)


@router.put("/{partner_id}/tier", response_model=Partner, summary="Change a partner's tier, effective-dated")
async def change_tier(
    partner_id: uuid.UUID, body: TierIn, ctx: Ctx, principal: Admin, if_match: IfMatch = None
) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        partner, version = await usecases.change_tier(tx, principal, partner_id, body, if_match)
    return json_response(_partner(partner), etag_version=version)


@router.post(
    "/{partner_id}/certifications", status_code=201, response_model=Partner, summary="Grant a certification"
)
async def grant_certification(
    partner_id: uuid.UUID,
    body: CertificationIn,
    request: Request,
    ctx: Ctx,
    principal: Admin,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def operation(tx):  # type: ignore[no-untyped-def]
        partner, version = await usecases.grant_certification(tx, principal, partner_id, body)
        return _partner(partner), version

    return await idempotent(ctx.db, request, idempotency_key, body, operation)


@router.delete("/{partner_id}/certifications/{code}", status_code=204, summary="Revoke a certification from now")
async def revoke_certification(partner_id: uuid.UUID, code: str, ctx: Ctx, principal: Admin) -> Response:
    async with ctx.db.transaction() as tx:
        await usecases.revoke_certification(tx, principal, partner_id, code)
    return Response(status_code=204)


@router.get("/{partner_id}/history", response_model=list[HistoryEntry], summary="Every change: who, when, what")
async def partner_history(partner_id: uuid.UUID, ctx: Ctx, principal: Anyone) -> list[HistoryEntry]:
    ensure_partner_scope(principal, partner_id)
    async with ctx.db.transaction() as tx:
        entries = await usecases.partner_history(tx, partner_id)
    return [HistoryEntry.model_validate(e) for e in entries]
