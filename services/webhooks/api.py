"""Webhook subscription, delivery log, retry and replay routes (CONTRACT §7)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from partnerhub.auth import AdminOrPartner
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
from services.webhooks import usecases
from services.webhooks.domain import DeliveryStatus, SubscriptionStatus
from services.webhooks.repository import Row
from services.webhooks.schemas import (
    Accepted,
    Attempt,
    Delivery,
    NewSecret,
    ReplayIn,
    Subscription,
    SubscriptionIn,
    SubscriptionPatch,
    SubscriptionWithSecret,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

NOT_FOUND: Responses = {404: {"description": "No such subscription, or another partner's (partner token)", **PROBLEM}}
UNSAFE: Responses = {422: {"description": "Invalid input, or a URL breaking a delivery rule (https only; no "
                                          "loopback, private, link-local or metadata address); `detail` names it",
                           **PROBLEM}}


def _subscription(row: Row) -> Subscription:
    return Subscription.model_validate(row._mapping)


def _page_cursor(rows: list[Row], limit: int) -> str | None:
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(last.created_at.isoformat(), str(last.id))


@router.post("", status_code=201, response_model=SubscriptionWithSecret,
             summary="Subscribe a URL to event types; the answer shows the signing secret, once",
             responses={403: {"description": "A partner token naming another partner", **PROBLEM}, **UNSAFE})
async def create_subscription(body: SubscriptionIn, request: Request, ctx: Ctx, principal: AdminOrPartner,
                              idempotency_key: IdempotencyKey = None) -> JSONResponse:
    await usecases.check_url(body.url, ctx.settings)

    async def operation(tx: Transaction) -> tuple[Any, int | None]:
        row, secret = await usecases.create_subscription(tx, principal, body, ctx.settings)
        return SubscriptionWithSecret(**_subscription(row).model_dump(), secret=secret), row.version

    # The caller's partner is part of the request: one partner's key never replays another's subscription.
    payload = {"partner": str(principal.partner_id), **body.model_dump(mode="json")}
    return await idempotent(ctx.db, request, idempotency_key, payload, operation)


@router.get("", response_model=Page[Subscription],
            summary="List subscriptions, oldest first (a partner token lists its own)",
            responses={403: {"description": "A partner token naming another partner", **PROBLEM}})
async def list_subscriptions(ctx: Ctx, principal: AdminOrPartner, partner_id: uuid.UUID | None = None,
                             status: SubscriptionStatus | None = None, limit: Limit = 50,
                             cursor: Cursor = None) -> Page[Subscription]:
    async with ctx.db.transaction() as tx:
        rows = await usecases.list_subscriptions(tx, principal, partner_id=partner_id, status=status,
                                                 after=decode_cursor(cursor), limit=limit + 1)
    return Page[Subscription](items=[_subscription(r) for r in rows[:limit]], next_cursor=_page_cursor(rows, limit))


@router.get("/{subscription_id}", response_model=Subscription, summary="Get a subscription (never its secret)",
            responses=NOT_FOUND)
async def get_subscription(subscription_id: uuid.UUID, ctx: Ctx, principal: AdminOrPartner) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        row = await usecases.get_subscription(tx, principal, subscription_id)
    return json_response(_subscription(row), etag_version=row.version)


@router.patch("/{subscription_id}", response_model=Subscription,
              summary="Change the URL or event types, or pause / resume (active also lifts disabled)",
              responses={**NOT_FOUND, **STALE, **UNSAFE})
async def update_subscription(subscription_id: uuid.UUID, body: SubscriptionPatch, ctx: Ctx,
                              principal: AdminOrPartner, if_match: IfMatch = None) -> JSONResponse:
    if body.url is not None:
        await usecases.check_url(body.url, ctx.settings)
    async with ctx.db.transaction() as tx:
        row = await usecases.update_subscription(tx, principal, subscription_id, body, if_match)
    return json_response(_subscription(row), etag_version=row.version)


@router.delete("/{subscription_id}", status_code=204, response_class=Response,
               summary="Delete a subscription: nothing more is delivered to it", responses={**NOT_FOUND, **STALE})
async def delete_subscription(subscription_id: uuid.UUID, ctx: Ctx, principal: AdminOrPartner,
                              if_match: IfMatch = None) -> Response:
    async with ctx.db.transaction() as tx:
        await usecases.delete_subscription(tx, principal, subscription_id, if_match)
    return Response(status_code=204)


@router.post("/{subscription_id}/secret", response_model=NewSecret,
             summary="Rotate the signing secret; the old one keeps signing alongside for 24 h", responses=NOT_FOUND)
async def rotate_secret(subscription_id: uuid.UUID, ctx: Ctx, principal: AdminOrPartner) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        row, secret, until = await usecases.rotate_secret(tx, principal, subscription_id, ctx.settings)
    return json_response(NewSecret(id=row.id, secret=secret, previous_secret_expires_at=until),
                         etag_version=row.version)


def _delivery(row: Row, attempts: list[Row]) -> Delivery:
    return Delivery(
        id=row.id, subscription_id=row.subscription_id, event_id=row.event_id, event_type=row.event_type,
        status=DeliveryStatus(row.status), next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
        delivered_at=row.delivered_at, created_at=row.created_at,
        attempts=[Attempt(attempted_at=a.attempted_at, response_status=a.response_status, error=a.error,
                          latency_ms=a.latency_ms) for a in attempts],
    )


@router.get("/{subscription_id}/deliveries", response_model=Page[Delivery],
            summary="The delivery log, oldest first: each delivery's status and every attempt", responses=NOT_FOUND)
async def list_deliveries(subscription_id: uuid.UUID, ctx: Ctx, principal: AdminOrPartner,
                          status: DeliveryStatus | None = None, limit: Limit = 50,
                          cursor: Cursor = None) -> Page[Delivery]:
    async with ctx.db.transaction() as tx:
        rows, attempts = await usecases.list_deliveries(tx, principal, subscription_id, status=status,
                                                        after=decode_cursor(cursor), limit=limit + 1)
    return Page[Delivery](items=[_delivery(r, attempts[r.id]) for r in rows[:limit]],
                          next_cursor=_page_cursor(rows, limit))


@router.post("/{subscription_id}/deliveries/{delivery_id}/retry", status_code=202, response_model=Accepted,
             summary="Deliver again now, whatever the delivery's status",
             responses={404: {"description": "No such subscription or delivery, or another partner's", **PROBLEM}})
async def retry_delivery(subscription_id: uuid.UUID, delivery_id: uuid.UUID, ctx: Ctx,
                         principal: AdminOrPartner) -> Accepted:
    async with ctx.db.transaction() as tx:
        await usecases.retry_delivery(tx, principal, subscription_id, delivery_id)
    return Accepted(deliveries=1)


@router.post("/{subscription_id}/replay", status_code=202, response_model=Accepted,
             summary="Deliver again every kept event (30 days) since `since` the subscription would receive",
             responses={**NOT_FOUND, 422: {"description": "Invalid input", **PROBLEM}})
async def replay(subscription_id: uuid.UUID, body: ReplayIn, ctx: Ctx, principal: AdminOrPartner) -> Accepted:
    async with ctx.db.transaction() as tx:
        queued = await usecases.replay(tx, principal, subscription_id, body.since)
    return Accepted(deliveries=queued)

