"""Incentives service wiring."""

from fastapi import FastAPI

from partnerhub.service import ServiceSpec, create_service_app
from services.incentives.api import router
from services.incentives.handlers import subscriptions

SPEC = ServiceSpec(
    name="incentives",
    title="Incentives",
    description=(
        "Products, programs, sales, the accrual ledger and statements. Consumes `sales.recorded`, "
        "`accounts.accounts` and `registry.partners`; publishes `incentives.accruals`."
    ),
    routers=[router],
    subscriptions=lambda _ctx: subscriptions(),
)


def create_app() -> FastAPI:
    return create_service_app(SPEC)
