"""Funds routes (CONTRACT §6)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from partnerhub.auth import Admin, AdminOrPartner, Anyone, Principal, Role, ensure_partner_scope, require
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
from partnerhub.problems import PROBLEM, STALE, Problem, Responses
from partnerhub.service import Ctx
from partnerhub.timeutil import utcnow
from partnerhub.types import Code
from services.funds import usecases
from services.funds.domain import ClaimStatus, RequestStatus
from services.funds.repository import FundsRepository
from services.funds.schemas import (
    Balance,
    Claim,
    ClaimIn,
    DecisionIn,
    Fund,
    FundIn,
    FundRequest,
    FundRequestIn,
    LedgerEntry,
)

router = APIRouter()
PartnerOnly = Annotated[Principal, Depends(require(Role.PARTNER))]
NOT_FOUND: Responses = {404: {"description": "Not found (or another partner's)", **PROBLEM}}
ILLEGAL: Responses = {409: {"description": "Not allowed in the current state; names the allowed moves", **PROBLEM}}
POLICY: Responses = {422: {"description": "Invalid, or breaks a rule of the fund's policy (see `rule`)", **PROBLEM}}


def _cursor(cursor: str | None, size: int) -> list[Any] | None:
    values = decode_cursor(cursor)
    if values is not None and len(values) != size:
        raise Problem(422, detail="the cursor is not one this service issued")
    return values


def _time_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    values = _cursor(cursor, 2)
    if values is None:
        return None
    try:
        return datetime.fromisoformat(str(values[0])), uuid.UUID(str(values[1]))
    except ValueError as exc:
        raise Problem(422, detail="the cursor is not one this service issued") from exc


def _scope_list(principal: Principal, partner_id: uuid.UUID | None) -> uuid.UUID | None:
    """A partner token lists its own partner's items; naming another partner is forbidden."""
    if principal.role is not Role.PARTNER:
        return partner_id
    if partner_id is not None:
        ensure_partner_scope(principal, partner_id)
    return principal.partner_id


# --- funds --------------------------------------------------------------------------------------
@router.post("/funds", status_code=201, response_model=Fund, tags=["funds"], summary="Create a fund",
             responses={409: {"description": "The code is taken", **PROBLEM}})
async def create_fund(
    body: FundIn, request: Request, ctx: Ctx, principal: Admin, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def operation(tx):  # type: ignore[no-untyped-def]
        fund = await usecases.create_fund(tx, body)
        return usecases.fund_view(fund, principal, utcnow()), fund.version

    return await idempotent(ctx.db, request, idempotency_key, body, operation)


@router.get("/funds", response_model=Page[Fund], tags=["funds"],
            summary="Funds (admin: all, with every figure; partner and system: those open to apply for)")
async def list_funds(ctx: Ctx, principal: Anyone, limit: Limit = 50, cursor: Cursor = None) -> Page[Fund]:
    after = _cursor(cursor, 1)
    now = utcnow()
    async with ctx.db.transaction() as tx:
        rows = await FundsRepository(tx.session).list_funds(
            open_at=None if principal.role is Role.ADMIN else now,
            after=str(after[0]) if after else None,
            limit=limit + 1,
        )
    page = [usecases.fund_view(r, principal, now) for r in rows[:limit]]
    return Page[Fund](items=page, next_cursor=encode_cursor(page[-1].code) if len(rows) > limit else None)


@router.get("/funds/{code}", response_model=Fund, tags=["funds"], summary="A fund with committed, paid, available",
            responses=NOT_FOUND)
async def get_fund(code: Code, ctx: Ctx, principal: Anyone) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        fund = await usecases.get_fund(tx, principal, code)
    return json_response(usecases.fund_view(fund, principal, utcnow()), etag_version=fund.version)


# --- requests -----------------------------------------------------------------------------------
@router.post(
    "/funds/{code}/requests", status_code=201, response_model=FundRequest, tags=["requests"],
    summary="Apply for funds: approved at once when it fits, else submitted for review",
    responses={**NOT_FOUND, 409: {"description": "The partner is suspended or terminated", **PROBLEM}, **POLICY},
)
async def request_funds(
    code: Code, body: FundRequestIn, request: Request, ctx: Ctx, principal: AdminOrPartner,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    ensure_partner_scope(principal, body.partner_id)

    async def operation(tx):  # type: ignore[no-untyped-def]
        return await usecases.request_funds(tx, principal, code, body)

    return await idempotent(ctx.db, request, idempotency_key, body, operation)


@router.get("/fund-requests", response_model=Page[FundRequest], tags=["requests"],
            summary="The review queue (admin) and a partner's own requests, with their claims")
async def list_requests(
    ctx: Ctx, principal: AdminOrPartner, partner_id: uuid.UUID | None = None, status: RequestStatus | None = None,
    fund_code: Code | None = None, limit: Limit = 50, cursor: Cursor = None,
) -> Page[FundRequest]:
    scoped = _scope_list(principal, partner_id)
    async with ctx.db.transaction() as tx:
        items = await usecases.list_requests(
            tx, partner_id=scoped, status=status.value if status else None, fund_code=fund_code,
            after=_time_cursor(cursor), limit=limit + 1,
        )
    page = items[:limit]
    last = page[-1] if page else None
    more = len(items) > limit and last is not None
    return Page[FundRequest](
        items=page, next_cursor=encode_cursor(last.created_at.isoformat(), str(last.id)) if more and last else None
    )


@router.get("/fund-requests/{request_id}", response_model=FundRequest, tags=["requests"],
            summary="A request with its claims", responses=NOT_FOUND)
async def get_request(request_id: uuid.UUID, ctx: Ctx, principal: AdminOrPartner) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        body, version = await usecases.get_request(tx, principal, request_id)
    return json_response(body, etag_version=version)


@router.post(
    "/fund-requests/{request_id}/decision", response_model=FundRequest, tags=["requests"],
    summary="Approve or reject a submitted request (409 beyond the budget, earned balance or limit)",
    responses={**NOT_FOUND, **ILLEGAL, **STALE},
)
async def decide_request(
    request_id: uuid.UUID, body: DecisionIn, ctx: Ctx, principal: Admin, if_match: IfMatch = None
) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        result, version = await usecases.decide_request(tx, principal, request_id, body, if_match)
    return json_response(result, etag_version=version)


@router.post(
    "/fund-requests/{request_id}/complete", response_model=FundRequest, tags=["requests"],
    summary="Complete an approved request, releasing the unclaimed rest", responses={**NOT_FOUND, **ILLEGAL, **STALE},
)
async def complete_request(
    request_id: uuid.UUID, ctx: Ctx, principal: AdminOrPartner, if_match: IfMatch = None
) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        result, version = await usecases.complete_request(tx, principal, request_id, if_match)
    return json_response(result, etag_version=version)


# --- claims -------------------------------------------------------------------------------------
@router.post(
    "/fund-requests/{request_id}/claims", status_code=201, response_model=Claim, tags=["claims"],
    summary="Claim with proof of execution (all claims together at most the approved amount)",
    responses={**NOT_FOUND, 409: {"description": "Beyond the approved amount, or the request is not approved",
                                  **PROBLEM}, **POLICY},
)
async def file_claim(
    request_id: uuid.UUID, body: ClaimIn, request: Request, ctx: Ctx, principal: PartnerOnly,
    idempotency_key: IdempotencyKey = None, if_match: IfMatch = None,
) -> JSONResponse:
    async def operation(tx):  # type: ignore[no-untyped-def]
        return await usecases.file_claim(tx, principal, request_id, body, if_match)

    return await idempotent(ctx.db, request, idempotency_key, body, operation)


@router.get("/fund-claims", response_model=Page[Claim], tags=["claims"],
            summary="Claims to review (admin) and a partner's own claims")
async def list_claims(
    ctx: Ctx, principal: AdminOrPartner, partner_id: uuid.UUID | None = None, status: ClaimStatus | None = None,
    limit: Limit = 50, cursor: Cursor = None,
) -> Page[Claim]:
    scoped = _scope_list(principal, partner_id)
    async with ctx.db.transaction() as tx:
        items = await usecases.list_claims(
            tx, partner_id=scoped, status=status.value if status else None, after=_time_cursor(cursor),
            limit=limit + 1,
        )
    page = items[:limit]
    last = page[-1] if page else None
    more = len(items) > limit and last is not None
    return Page[Claim](
        items=page, next_cursor=encode_cursor(last.created_at.isoformat(), str(last.id)) if more and last else None
    )


@router.get("/fund-claims/{claim_id}", response_model=Claim, tags=["claims"], summary="A claim",
            responses=NOT_FOUND)
async def get_claim(claim_id: uuid.UUID, ctx: Ctx, principal: AdminOrPartner) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        body, version = await usecases.get_claim(tx, principal, claim_id)
    return json_response(body, etag_version=version)


@router.post(
    "/fund-claims/{claim_id}/decision", response_model=Claim, tags=["claims"],
    summary="Approve (pays it: fund.claim_paid) or reject a submitted claim",
    responses={**NOT_FOUND, **ILLEGAL, **STALE},
)
async def decide_claim(
    claim_id: uuid.UUID, body: DecisionIn, ctx: Ctx, principal: Admin, if_match: IfMatch = None
) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        result, version = await usecases.decide_claim(tx, principal, claim_id, body, if_match)
    return json_response(result, etag_version=version)


# --- a partner's balances and ledger ------------------------------------------------------------
@router.get("/partners/{partner_id}/fund-balances", response_model=Page[Balance], tags=["balances"],
            summary="Per fund: earned, committed, paid, available (funds it has a balance in, and open ones)")
async def fund_balances(
    partner_id: uuid.UUID, ctx: Ctx, principal: AdminOrPartner, limit: Limit = 50, cursor: Cursor = None
) -> Page[Balance]:
    ensure_partner_scope(principal, partner_id)
    after = _cursor(cursor, 1)
    async with ctx.db.transaction() as tx:
        rows = await FundsRepository(tx.session).balances(
            partner_id, open_at=utcnow(), after=str(after[0]) if after else None, limit=limit + 1
        )
    page = [Balance.model_validate(usecases.balance_view(r)) for r in rows[:limit]]
    return Page[Balance](items=page, next_cursor=encode_cursor(page[-1].fund_code) if len(rows) > limit else None)


@router.get("/partners/{partner_id}/fund-ledger", response_model=Page[LedgerEntry], tags=["balances"],
            summary="Every credit, debit, commitment, release, payout and lapse, with its cause")
async def fund_ledger(
    partner_id: uuid.UUID, ctx: Ctx, principal: AdminOrPartner, fund_code: Code | None = None,
    limit: Limit = 50, cursor: Cursor = None,
) -> Page[LedgerEntry]:
    ensure_partner_scope(principal, partner_id)
    after = _cursor(cursor, 1)
    try:
        after_id = int(after[0]) if after else None
    except (TypeError, ValueError) as exc:
        raise Problem(422, detail="the cursor is not one this service issued") from exc
    async with ctx.db.transaction() as tx:
        rows = await FundsRepository(tx.session).ledger(partner_id, fund_code=fund_code, after=after_id,
                                                        limit=limit + 1)
    page = [LedgerEntry.model_validate(dict(r._mapping)) for r in rows[:limit]]
    return Page[LedgerEntry](items=page, next_cursor=encode_cursor(page[-1].id) if len(rows) > limit else None)
