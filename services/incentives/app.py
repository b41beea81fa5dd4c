"""Incentives service wiring."""

import asyncio
import logging

from fastapi import FastAPI

from partnerhub.service import ServiceContext, ServiceSpec, create_service_app
from services.incentives import usecases
from services.incentives.api import router
from services.incentives.handlers import subscriptions
from services.incentives.repository import IncentivesRepository

log = logging.getLogger(__name__)
# Sales are priced as they are recorded; only those whose locks were busy then (a recalculation held their
# account, partner or sku) wait as received, so a short poll of one partial index finds them cheaply.
IDLE_POLL_SECONDS = 0.25


async def price_received_sales(ctx: ServiceContext) -> None:
    """Prices the sales left waiting as received, in set-based batches, one replica at a time."""
    while True:
        try:
            async with ctx.db.transaction() as tx:
                priced = await usecases.price_received_sales(tx)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pricing received sales failed; retrying")
            priced = 0
            await asyncio.sleep(1.0)
        if priced < usecases.PRICING_BATCH:
            await asyncio.sleep(IDLE_POLL_SECONDS)


async def sales_waiting_for_pricing(ctx: ServiceContext) -> int:
    async with ctx.db.transaction() as tx:
        return await IncentivesRepository(tx.session).count_received()


SPEC = ServiceSpec(
    name="incentives",
    title="Incentives",
    description=(
        "Products, programs, sales, the accrual ledger and statements. Consumes `sales.recorded`, "
        "`accounts.accounts` and `registry.partners`; publishes `incentives.accruals`."
    ),
    routers=[router],
    subscriptions=lambda _ctx: subscriptions(),
    background=lambda ctx: [price_received_sales(ctx)],
    backlog=sales_waiting_for_pricing,
)


def create_app() -> FastAPI:
    return create_service_app(SPEC)
