"""Registry service wiring."""

from collections.abc import Coroutine
from typing import Any

from fastapi import FastAPI

from partnerhub.service import ServiceContext, ServiceSpec, create_service_app
from partnerhub.sweeps import periodic
from services.registry import usecases
from services.registry.api import router

CERTIFICATION_EXPIRY_SWEEP = "registry.certification-expiry"


def background(ctx: ServiceContext) -> list[Coroutine[Any, Any, None]]:
    return [
        periodic(
            ctx.db, CERTIFICATION_EXPIRY_SWEEP, ctx.settings.sweep_interval_seconds, usecases.expire_certifications
        )
    ]


SPEC = ServiceSpec(
    name="registry",
    title="Registry",
    description=(
        "Partners: types, tiers, status, certifications and two-tier distribution. Publishes `registry.partners`."
    ),
    routers=[router],
    background=background,
)


def create_app() -> FastAPI:
    return create_service_app(SPEC)
