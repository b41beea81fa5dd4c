"""Fault tests: the services in-process as the per-service tests start them, a raw producer, the dead letters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from partnerhub.kafka import TOPICS, dead_letter_topic
from tests.accounts.conftest import accounts, registry
from tests.conftest import Infrastructure
from tests.funds.conftest import funds
from tests.incentives.conftest import incentives
from tests.registry.support import EventLog

# The services' own session fixtures, shared here so every fault test runs against one set of services.
__all__ = ["accounts", "dead_letters", "funds", "incentives", "raw_producer", "registry"]


@pytest.fixture(scope="session")
async def raw_producer(infrastructure: Infrastructure) -> AsyncIterator[AIOKafkaProducer]:
    """Sends any bytes, as a broken or hostile upstream system would; `publish` only sends well-formed events."""
    producer = AIOKafkaProducer(
        bootstrap_servers=infrastructure.bootstrap_servers, acks="all", enable_idempotence=False
    )
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture(scope="session")
async def dead_letters(infrastructure: Infrastructure) -> AsyncIterator[EventLog]:
    """Every dead letter of the session, from every `<topic>.dlq`."""
    log = EventLog(infrastructure.bootstrap_servers, [dead_letter_topic(topic) for topic in TOPICS])
    await log.start()
    yield log
    await log.stop()
