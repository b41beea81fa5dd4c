from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import Infrastructure, running_service
from tests.registry.support import EventLog


@pytest.fixture(scope="session")
async def registry(infrastructure: Infrastructure) -> AsyncIterator[httpx.AsyncClient]:
    async with running_service("registry") as client:
        yield client


@pytest.fixture(scope="session")
async def accounts(registry: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    async with running_service("accounts") as client:
        ctx = client.app.state.ctx  # type: ignore[attr-defined]
        await ctx.http.aclose()
        # The registry runs in this process, not on its port: its read-through reaches it over ASGI.
        ctx.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=registry.app))  # type: ignore[attr-defined]
        yield client


@pytest.fixture(scope="session")
async def event_log(infrastructure: Infrastructure) -> AsyncIterator[EventLog]:
    """Every message of the accounts topic and the partners' dead letters, read once for the session."""
    log = EventLog(infrastructure.bootstrap_servers, ["accounts.accounts", "registry.partners.dlq"])
    await log.start()
    yield log
    await log.stop()
