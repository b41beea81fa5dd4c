"""Funds service wiring."""

from collections.abc import Coroutine
from typing import Any

from fastapi import FastAPI

from partnerhub.service import ServiceContext, ServiceSpec, create_service_app
from partnerhub.sweeps import periodic
from services.funds import usecases
from services.funds.api import router
from services.funds.handlers import subscriptions

SWEEP_SECONDS = 60.0


def sweeps(ctx: ServiceContext) -> list[Coroutine[Any, Any, None]]:
    return [
        periodic(ctx.db, "funds.claim_deadline", SWEEP_SECONDS, usecases.complete_overdue_requests),
        periodic(ctx.db, "funds.lapse", SWEEP_SECONDS, usecases.lapse_unused_balances),
    ]


SPEC = ServiceSpec(
    name="funds",
    title="Funds",
    description=(
        "Marketing funds (MDF, JMF, ADIF, GPIF): budgets, earned balances, requests, claims, payouts. "
        "Consumes `incentives.accruals` and `registry.partners`; publishes `funds.funds`."
    ),
    routers=[router],
    subscriptions=lambda _ctx: subscriptions(),
    background=sweeps,
)


def create_app() -> FastAPI:
    return create_service_app(SPEC)
