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
async def event_log(infrastructure: Infrastructure) -> AsyncIterator[EventLog]:
    log = EventLog(infrastructure.bootstrap_servers, ["registry.partners"])
    await log.start()
    yield log
    await log.stop()
