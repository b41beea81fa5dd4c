from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import Infrastructure, running_service


@pytest.fixture(scope="session")
async def incentives(infrastructure: Infrastructure) -> AsyncIterator[httpx.AsyncClient]:
    async with running_service("incentives") as client:
        yield client
