from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import Infrastructure, running_service


@pytest.fixture(scope="session")
async def funds(infrastructure: Infrastructure) -> AsyncIterator[httpx.AsyncClient]:
    async with running_service("funds") as client:
        yield client


