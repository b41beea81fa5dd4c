"""PARTNERHUB_RUN_API / PARTNERHUB_RUN_WORKERS: a cluster runs a service's API and its workers as separate pods."""

from __future__ import annotations

import httpx
import pytest

from partnerhub.config import get_settings
from partnerhub.service import ServiceContext, create_service_app
from services.accounts.app import SPEC as ACCOUNTS
from tests.conftest import Infrastructure, eventually


async def test_an_api_pod_serves_routes_and_runs_no_workers(infrastructure: Infrastructure) -> None:
    settings = get_settings().model_copy(update={"run_workers": False})
    app = create_service_app(ACCOUNTS, settings)
    async with app.router.lifespan_context(app):
        ctx: ServiceContext = app.state.ctx
        assert ctx.relay is None and ctx.consumers == [] and ctx.tasks == []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://accounts") as client:
            assert (await client.get("/v1/accounts")).status_code == 401, "the API is there (and wants a token)"
            assert (await client.get("/readyz")).status_code == 200


async def test_a_worker_pod_runs_relay_and_consumers_and_serves_no_routes(infrastructure: Infrastructure) -> None:
    settings = get_settings().model_copy(update={"run_api": False})
    app = create_service_app(ACCOUNTS, settings)
    async with app.router.lifespan_context(app):
        ctx: ServiceContext = app.state.ctx
        assert ctx.relay is not None and [c.group_id for c in ctx.consumers] == ["accounts.registry.partners"]
        assert all(not task.done() for task in ctx.tasks)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://accounts") as client:
            assert (await client.get("/v1/accounts")).status_code == 404
            assert (await client.get("/healthz")).status_code == 200

            async def readiness() -> dict[str, str]:
                answer = await client.get("/readyz")
                return answer.json()["checks"] if answer.status_code == 200 else {}

            # Ready once its consumer has joined its group and knows where to read: not before.
            checks = await eventually(readiness, within=60)
            assert checks["consumers"] == "ok" and all(runner.consuming() for runner in ctx.consumers)
            assert (await client.get("/metrics")).status_code == 200
    assert not [path for path in app.openapi()["paths"] if path.startswith("/v1")]


def test_a_pod_that_would_run_nothing_refuses_to_start() -> None:
    settings = get_settings().model_copy(update={"run_api": False, "run_workers": False})
    with pytest.raises(RuntimeError, match="nothing would run"):
        create_service_app(ACCOUNTS, settings)


def test_both_are_on_by_default() -> None:
    defaults = type(get_settings())()
    assert defaults.run_api and defaults.run_workers
