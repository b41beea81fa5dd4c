"""Accounts service wiring."""

from fastapi import FastAPI

from partnerhub.consumer import Subscription
from partnerhub.service import ServiceSpec, create_service_app
from services.accounts.api import router
from services.accounts.handlers import PARTNER_HANDLERS

SPEC = ServiceSpec(
    name="accounts",
    title="Accounts",
    description=(
        "Customer accounts: classification and one owner at a time, both effective-dated. "
        "Consumes `registry.partners`; publishes `accounts.accounts`."
    ),
    routers=[router],
    subscriptions=lambda _ctx: [Subscription("registry.partners", PARTNER_HANDLERS)],
)


def create_app() -> FastAPI:
    return create_service_app(SPEC)
