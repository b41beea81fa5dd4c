"""Registry service wiring."""

from fastapi import FastAPI

from partnerhub.service import ServiceSpec, create_service_app
from services.registry.api import router

SPEC = ServiceSpec(
    name="registry",
    title="Registry",
    description="Partners: types, tiers, status and certifications. Publishes `registry.partners`.",
    routers=[router],
)


def create_app() -> FastAPI:
    return create_service_app(SPEC)
