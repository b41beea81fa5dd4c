from collections.abc import AsyncIterator

import httpx
import pytest

from partnerhub.config import Settings
from tests.conftest import Infrastructure, running_service
from tests.webhooks.receiver import Receiver

# Seconds where production has hours: the tests see retries and timeouts at once. The failure windows are long
# enough for every receiver that recovers to recover; the test of disabling shortens them while it runs.
FAST = {
    "webhook_timeout_seconds": 1.0,
    "webhook_retry_first_seconds": 0.05,
    "webhook_retry_longest_seconds": 0.3,
    "webhook_retry_window_seconds": 60.0,
    "webhook_disable_after_seconds": 60.0,
    "webhook_lease_seconds": 3.0,
    "webhook_poll_seconds": 0.05,
    "webhook_per_subscription": 2,
    "webhook_concurrency": 16,
    # Secrets sealed at rest, as production should run.
    "webhook_secrets_keys": "hNwQbvwxVBh6jIzBfiWMYmT4pzKwRBQWyMlLNfB5rZc=",
    # It publishes nothing: stopping need not wait for the session's other services to fall quiet.
    "drain_timeout_seconds": 3.0,
    "drain_quiet_seconds": 0.3,
}


def fast_settings(settings: Settings) -> Settings:
    return settings.model_copy(update=FAST)


@pytest.fixture(scope="module")
def webhook_settings(settings: Settings) -> Settings:
    """The settings the module's webhooks service runs with (the same object: a test may change them live)."""
    return fast_settings(settings)


@pytest.fixture(scope="module")
async def webhooks(infrastructure: Infrastructure, webhook_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    # One module at a time: the restart test runs the service as a process of its own instead.
    # Handed out once caught up with the public topics (running_service): a first start reads everything earlier
    # tests published.
    async with running_service("webhooks", webhook_settings) as client:
        yield client


@pytest.fixture(scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()
