"""Funds service wiring."""

from fastapi import FastAPI

from partnerhub.service import ServiceSpec, create_service_app

SPEC = ServiceSpec(
    name="funds",
    title="Funds",
    description="Marketing funds (MDF, JMF, ADIF, GPIF): budgets, earned balances, requests, claims, payouts.",
    routers=[],
)


def create_app() -> FastAPI:
    return create_service_app(SPEC)
