"""Registry routes (CONTRACT §3)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from partnerhub.auth import Admin, AdminOrSystem, Anyone, ensure_partner_scope
from partnerhub.db import Transaction
from partnerhub.http import (
    Cursor,
    IdempotencyKey,
    IfMatch,
    Limit,
    Page,
    decode_cursor,
    encode_cursor,
    etag_of,
    idempotent,
    json_response,
    time_and_id,
)
from partnerhub.problems import PROBLEM, STALE, Responses
from partnerhub.service import Ctx
from partnerhub.types import Country
from services.registry import usecases
from services.registry.domain import PartnerType, Status, Tier
from services.registry.repository import PartnerRepository
from services.registry.schemas import (
    CertificationIn,
    CertificationRecord,
    HistoryEntry,
    ParentIn,
    Partner,
    PartnerIn,
    StatusIn,
    TierEntry,
    TierIn,
)

router = APIRouter(prefix="/partners", tags=["partners"])

NOT_FOUND: Responses = {404: {"description": "No such partner", **PROBLEM}}
OTHER_PARTNER: Responses = {403: {"description": "A partner token naming another partner", **PROBLEM}}
CERTIFICATION_CODE = Annotated[str, Path(max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")]


def _partner(row: dict[str, Any]) -> Partner:
    return Partner.model_validate(row)


@router.post(
    "",
    status_code=201,
    response_model=Partner,
    summary="Register a partner (status pending, tier registered)",
    responses={409: {"description": "The Idempotency-Key was used with another body", **PROBLEM}},
)
async def register_partner(
    body: PartnerIn, request: Request, ctx: Ctx, principal: Admin, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def operation(tx: Transaction) -> tuple[Any, int | None]:
        partner, version = await usecases.register_partner(tx, principal, body)
        return _partner(partner), version

    return await idempotent(ctx.db, request, idempotency_key, body, operation)


@router.get("", response_model=Page[Partner], summary="List partners, oldest first")
async def list_partners(
    ctx: Ctx,
    principal: AdminOrSystem,
    type: PartnerType | None = None,
    tier: Annotated[Tier | None, Query(description="the tier in force now")] = None,
    status: Status | None = None,
    country: Annotated[Country | None, Query(description="ISO 3166-1 alpha-2")] = None,
    parent_partner_id: Annotated[uuid.UUID | None, Query(description="a distributor's resellers")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[Partner]:
    async with ctx.db.transaction() as tx:
        rows = await PartnerRepository(tx.session).search(
            type_=type, tier=tier, status=status, country=country, parent_partner_id=parent_partner_id,
            after=time_and_id(decode_cursor(cursor)), limit=limit + 1,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return Page[Partner](
        items=[_partner(r) for r in rows],
        next_cursor=encode_cursor(last["created_at"].isoformat(), str(last["id"])) if more and last else None,
    )


@router.get(
    "/{partner_id}", response_model=Partner, summary="Get a partner", responses={**NOT_FOUND, **OTHER_PARTNER}
)
async def get_partner(partner_id: uuid.UUID, ctx: Ctx, principal: Anyone) -> JSONResponse:
    ensure_partner_scope(principal, partner_id)
    partner = await usecases.read_partner(ctx.db, partner_id)
    return json_response(_partner(partner), etag_version=partner["version"])


@router.post(
    "/{partner_id}/status",
    response_model=Partner,
    summary="Change a partner's status: pending → active ↔ suspended; any → terminated (final)",
    responses={
        **NOT_FOUND,
        **STALE,
        409: {"description": "A move the status machine does not allow; names the allowed moves", **PROBLEM},
        422: {"description": "No reason given to suspend or terminate", **PROBLEM},
    },
)
async def change_status(
    partner_id: uuid.UUID,
    body: StatusIn,
    request: Request,
    ctx: Ctx,
    principal: Admin,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def operation(tx: Transaction) -> tuple[Any, int | None]:
        partner, version = await usecases.change_status(tx, principal, partner_id, body, if_match)
        return _partner(partner), version

    return await idempotent(ctx.db, request, idempotency_key, body, operation, status_code=200)


@router.put(
    "/{partner_id}/tier",
    response_model=Partner,
    summary="Change a partner's tier from effective_from (kept as history; the partner shows the tier now)",
    responses={
        **NOT_FOUND,
        **STALE,
        409: {"description": "The partner already has that tier at effective_from, or is terminated", **PROBLEM},
    },
)
async def change_tier(
    partner_id: uuid.UUID, body: TierIn, ctx: Ctx, principal: Admin, if_match: IfMatch = None
) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        partner, version = await usecases.change_tier(tx, principal, partner_id, body, if_match)
    return json_response(_partner(partner), etag_version=version)


@router.get(
    "/{partner_id}/tiers",
    response_model=list[TierEntry],
    summary="The partner's effective-dated tier timeline",
    responses={**NOT_FOUND, **OTHER_PARTNER},
)
async def tier_timeline(partner_id: uuid.UUID, ctx: Ctx, principal: Anyone) -> list[TierEntry]:
    ensure_partner_scope(principal, partner_id)
    async with ctx.db.transaction() as tx:
        entries = await usecases.tier_timeline(tx, partner_id)
    return [TierEntry.model_validate(e) for e in entries]


@router.put(
    "/{partner_id}/parent",
    response_model=Partner,
    summary="Make the partner a two-tier reseller of an active distributor, or of none",
    responses={
        **NOT_FOUND,
        **STALE,
        409: {"description": "The partner is terminated", **PROBLEM},
        422: {"description": "Itself, unknown, not an active sales partner, or a cycle of parents", **PROBLEM},
    },
)
async def change_parent(
    partner_id: uuid.UUID, body: ParentIn, ctx: Ctx, principal: Admin, if_match: IfMatch = None
) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        partner, version = await usecases.change_parent(tx, principal, partner_id, body, if_match)
    return json_response(_partner(partner), etag_version=version)


@router.post(
    "/{partner_id}/certifications",
    status_code=201,
    response_model=Partner,
    summary="Grant (or re-grant) a certification for [issued_at, expires_at)",
    responses={
        **NOT_FOUND,
        **STALE,
        409: {"description": "The partner is terminated, or the Idempotency-Key was used with another body", **PROBLEM},
    },
)
async def grant_certification(
    partner_id: uuid.UUID,
    body: CertificationIn,
    request: Request,
    ctx: Ctx,
    principal: Admin,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def operation(tx: Transaction) -> tuple[Any, int | None]:
        partner, version = await usecases.grant_certification(tx, principal, partner_id, body, if_match)
        return _partner(partner), version

    return await idempotent(ctx.db, request, idempotency_key, body, operation)


@router.get(
    "/{partner_id}/certifications",
    response_model=list[CertificationRecord],
    summary="Every certification the partner was granted, with its state now (held, scheduled, expired, revoked)",
    responses={**NOT_FOUND, **OTHER_PARTNER},
)
async def list_certifications(partner_id: uuid.UUID, ctx: Ctx, principal: Anyone) -> list[CertificationRecord]:
    ensure_partner_scope(principal, partner_id)
    async with ctx.db.transaction() as tx:
        records = await usecases.certifications_of(tx, partner_id)
    return [CertificationRecord.model_validate(r) for r in records]


@router.delete(
    "/{partner_id}/certifications/{code}",
    status_code=204,
    summary="Revoke a certification from now",
    responses={
        404: {"description": "No such partner, or it holds no such certification (never, or revoked)", **PROBLEM},
        **STALE,
        409: {"description": "The certification has already expired", **PROBLEM},
    },
)
async def revoke_certification(
    partner_id: uuid.UUID, code: CERTIFICATION_CODE, ctx: Ctx, principal: Admin, if_match: IfMatch = None
) -> Response:
    async with ctx.db.transaction() as tx:
        version = await usecases.revoke_certification(tx, principal, partner_id, code, if_match)
    return Response(status_code=204, headers={"ETag": etag_of(version)})


@router.get(
    "/{partner_id}/history",
    response_model=list[HistoryEntry],
    summary="Every change: who (token sub), when, what",
    responses={**NOT_FOUND, **OTHER_PARTNER},
)
async def partner_history(partner_id: uuid.UUID, ctx: Ctx, principal: Anyone) -> list[HistoryEntry]:
    ensure_partner_scope(principal, partner_id)
    async with ctx.db.transaction() as tx:
        entries = await usecases.partner_history(tx, partner_id)
    return [HistoryEntry.model_validate(e) for e in entries]
