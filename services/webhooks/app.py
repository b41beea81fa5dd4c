"""Webhooks service wiring."""

from collections.abc import Coroutine
from typing import Any

from fastapi import FastAPI

from partnerhub.db import Transaction
from partnerhub.service import ServiceContext, ServiceSpec, create_service_app
from partnerhub.sweeps import periodic
from services.webhooks import usecases
from services.webhooks.api import router
from services.webhooks.handlers import subscriptions

RETENTION_SWEEP = "webhooks.retention"


def background(ctx: ServiceContext) -> list[Coroutine[Any, Any, None]]:
    async def prune(tx: Transaction) -> int:
        return await usecases.prune(tx, ctx.settings.webhook_retention_days)

    return [
        usecases.DeliveryWorker(ctx.db, ctx.settings).run(),
        periodic(ctx.db, RETENTION_SWEEP, ctx.settings.sweep_interval_seconds, prune),
    ]


SPEC = ServiceSpec(
    name="webhooks",
    title="Webhooks",
    description=(
        "Subscriptions of partners' systems to the public events, delivered as signed HTTPS POSTs (Standard "
        "Webhooks) from a durable queue, retried with backoff for 24 h. Consumes `registry.partners`, "
        "`accounts.accounts`, `incentives.accruals`, `incentives.statements` and `funds.funds`; publishes nothing."
    ),
    routers=[router],
    subscriptions=lambda _ctx: subscriptions(),
    background=background,
)


def create_app() -> FastAPI:
    return create_service_app(SPEC)
