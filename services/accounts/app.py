"""Accounts service wiring."""

from collections.abc import Coroutine
from typing import Any

from fastapi import FastAPI

from partnerhub.consumer import Subscription
from partnerhub.service import ServiceContext, ServiceSpec, create_service_app
from partnerhub.sweeps import periodic
from services.accounts import usecases
from services.accounts.api import registrations_router, router
from services.accounts.handlers import PARTNER_HANDLERS

REGISTRATION_EXPIRY_SWEEP = "accounts.registration-expiry"


def background(ctx: ServiceContext) -> list[Coroutine[Any, Any, None]]:
    return [
        periodic(ctx.db, REGISTRATION_EXPIRY_SWEEP, ctx.settings.sweep_interval_seconds, usecases.expire_registrations)
    ]


SPEC = ServiceSpec(
    name="accounts",
    title="Accounts",
    description=(
        "Customer accounts: classification and one owner at a time, both effective-dated; customer "
        "preregistration. Consumes `registry.partners`; publishes `accounts.accounts`."
    ),
    routers=[router, registrations_router],
    subscriptions=lambda _ctx: [Subscription("registry.partners", PARTNER_HANDLERS)],
    background=background,
)


def create_app() -> FastAPI:
    return create_service_app(SPEC)
