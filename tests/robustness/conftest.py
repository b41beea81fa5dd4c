"""Robustness tests: the services in-process as their own tests start them, probed with hostile input."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from partnerhub.config import Settings
from tests.accounts.conftest import accounts, registry
from tests.conftest import Infrastructure, running_service
from tests.funds.conftest import funds
from tests.incentives.conftest import incentives

# The services' own session fixtures, shared so every robustness test runs against one set of services.
__all__ = ["accounts", "funds", "incentives", "registry", "webhooks"]


@pytest.fixture(scope="session")
async def webhooks(infrastructure: Infrastructure, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The webhooks API alone: its workers (consumers, deliveries) are the webhooks tests' own, started there with
    settings of their own."""
    async with running_service("webhooks", settings.model_copy(update={"run_workers": False})) as client:
        yield client
