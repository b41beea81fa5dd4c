"""Accounts and customer preregistration routes (CONTRACT §4)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from partnerhub.auth import Admin, AdminOrPartner, Anyone, Principal, Role, require
from partnerhub.db import Transaction
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
from partnerhub.problems import PROBLEM, STALE, Responses
from partnerhub.service import Ctx
from services.accounts import usecases
from services.accounts.domain import Classification, Decision, RegistrationStatus
from services.accounts.schemas import (
    Account,
    AccountIn,
    ClassificationIn,
    DecisionIn,
    HistoryEntry,
    OwnerIn,
    Registration,
    RegistrationIn,
)

router = APIRouter(prefix="/accounts", tags=["accounts"])

NOT_FOUND: Responses = {404: {"description": "No such account, or another partner's (partner token)", **PROBLEM}}


def _account(row: dict[str, Any]) -> Account:
    return Account.model_validate(row)


@router.post("", status_code=201, response_model=Account, summary="Create an account (unowned)")
async def create_account(
    body: AccountIn, request: Request, ctx: Ctx, principal: Admin, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def operation(tx: Transaction) -> tuple[Any, int | None]:
        account, version = await usecases.create_account(tx, principal, body)
        return _account(account), version

    return await idempotent(ctx.db, request, idempotency_key, body, operation)


@router.get(
    "",
    response_model=Page[Account],
    summary="List accounts (a partner token lists the accounts its partner owns now)",
)
async def list_accounts(
    ctx: Ctx,
    principal: Anyone,
    owner_partner_id: uuid.UUID | None = None,
    classification: Classification | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[Account]:
    async with ctx.db.transaction() as tx:
        rows = await usecases.list_accounts(
            tx,
            principal,
            owner_partner_id=owner_partner_id,
            classification=classification,
            after=decode_cursor(cursor),
            limit=limit + 1,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return Page[Account](
        items=[_account(r) for r in rows],
        next_cursor=encode_cursor(last["created_at"].isoformat(), str(last["id"])) if more and last else None,
    )


@router.get("/{account_id}", response_model=Account, summary="Get an account", responses=NOT_FOUND)
async def get_account(account_id: uuid.UUID, ctx: Ctx, principal: Anyone) -> JSONResponse:
    account = await usecases.read_account(ctx.db, principal, account_id)
    return json_response(_account(account), etag_version=account["version"])


@router.put(
    "/{account_id}/classification",
    response_model=Account,
    summary="Reclassify an account from effective_from (409 when already so classified then)",
    responses={
        **NOT_FOUND,
        **STALE,
        409: {"description": "The account already has that classification at effective_from", **PROBLEM},
    },
)
async def reclassify(
    account_id: uuid.UUID, body: ClassificationIn, ctx: Ctx, principal: Admin, if_match: IfMatch = None
) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        account, version = await usecases.reclassify(tx, principal, account_id, body, if_match)
    return json_response(_account(account), etag_version=version)


@router.put(
    "/{account_id}/owner",
    response_model=Account,
    summary="Give an account to an active partner, or none, from effective_from (409 when already so then)",
    responses={
        **NOT_FOUND,
        **STALE,
        409: {"description": "The account already has that owner (or none) at effective_from", **PROBLEM},
        422: {"description": "The partner is unknown, pending, suspended or terminated", **PROBLEM},
        503: {"description": "The partner was not in the replica and the registry did not answer", **PROBLEM},
    },
)
async def change_owner(
    account_id: uuid.UUID, body: OwnerIn, ctx: Ctx, principal: Admin, if_match: IfMatch = None
) -> JSONResponse:
    registry = None
    if body.partner_id is not None:
        registry = await usecases.ask_registry_about_owner(ctx, body.partner_id)
    async with ctx.db.transaction() as tx:
        account, version = await usecases.change_owner(tx, principal, account_id, body, if_match, registry)
    return json_response(_account(account), etag_version=version)


@router.get(
    "/{account_id}/history",
    response_model=list[HistoryEntry],
    summary="The effective-dated timeline of classification and ownership, with causes",
    responses=NOT_FOUND,
)
async def account_history(account_id: uuid.UUID, ctx: Ctx, principal: Anyone) -> list[HistoryEntry]:
    async with ctx.db.transaction() as tx:
        entries = await usecases.account_history(tx, principal, account_id)
    return [HistoryEntry.model_validate(e) for e in entries]


registrations_router = APIRouter(prefix="/registrations", tags=["registrations"])
Partner = Annotated[Principal, Depends(require(Role.PARTNER))]
REGISTRATION_NOT_FOUND: Responses = {
    404: {"description": "No such registration, or another partner's (partner token)", **PROBLEM}
}


def _registration(row: dict[str, Any]) -> Registration:
    return Registration.model_validate(row)


@registrations_router.post(
    "",
    status_code=201,
    response_model=Registration,
    summary="Preregister a customer for the calling partner: pending for 15 days",
    responses={
        409: {
            "description": (
                "The account is owned, strategic, or preregistered (pending) by a partner; the partner already "
                "holds 100 pending, or is suspended or terminated; `reason` names which"
            ),
            **PROBLEM,
        },
        422: {"description": "Neither or both of account_id and prospect, or an unknown account", **PROBLEM},
    },
)
async def preregister(
    body: RegistrationIn, request: Request, ctx: Ctx, principal: Partner, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def operation(tx: Transaction) -> tuple[Any, int | None]:
        registration, version = await usecases.preregister(tx, principal, body)
        return _registration(registration), version

    # The caller's partner is part of the request: one partner's key never replays another's registration.
    payload = {"partner_id": str(principal.partner_id), **body.model_dump(mode="json")}
    return await idempotent(ctx.db, request, idempotency_key, payload, operation)


@registrations_router.get(
    "",
    response_model=Page[Registration],
    summary="List registrations, oldest first (a partner token lists its own)",
    responses={403: {"description": "A partner token naming another partner", **PROBLEM}},
)
async def list_registrations(
    ctx: Ctx,
    principal: AdminOrPartner,
    partner_id: uuid.UUID | None = None,
    status: RegistrationStatus | None = None,
    account_id: uuid.UUID | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[Registration]:
    async with ctx.db.transaction() as tx:
        rows = await usecases.list_registrations(
            tx, principal, partner_id=partner_id, status=status, account_id=account_id,
            after=decode_cursor(cursor), limit=limit + 1,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return Page[Registration](
        items=[_registration(r) for r in rows],
        next_cursor=encode_cursor(last["created_at"].isoformat(), str(last["id"])) if more and last else None,
    )


@registrations_router.get(
    "/{registration_id}", response_model=Registration, summary="Get a registration", responses=REGISTRATION_NOT_FOUND
)
async def get_registration(registration_id: uuid.UUID, ctx: Ctx, principal: AdminOrPartner) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        registration = await usecases.get_registration(tx, principal, registration_id)
    return json_response(_registration(registration), etag_version=registration["version"])


@registrations_router.post(
    "/{registration_id}/decision",
    response_model=Registration,
    summary="Approve (the partner owns the account from now) or reject a pending registration",
    responses={
        **REGISTRATION_NOT_FOUND,
        **STALE,
        409: {"description": "Not pending (decided or expired), or the account is now owned or strategic", **PROBLEM},
        422: {"description": "Approving for a partner that is no longer active", **PROBLEM},
        503: {"description": "The partner was not in the replica and the registry did not answer", **PROBLEM},
    },
)
async def decide_registration(
    registration_id: uuid.UUID,
    body: DecisionIn,
    request: Request,
    ctx: Ctx,
    principal: Admin,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        partner_id = await usecases.registration_partner(tx, principal, registration_id)
    registry = None
    if body.decision is Decision.APPROVE:
        registry = await usecases.ask_registry_about_owner(ctx, partner_id)

    async def operation(tx: Transaction) -> tuple[Any, int | None]:
        registration, version = await usecases.decide_registration(
            tx, principal, registration_id, partner_id, body, if_match, registry
        )
        return _registration(registration), version

    return await idempotent(ctx.db, request, idempotency_key, body, operation, status_code=200)
