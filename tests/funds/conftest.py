import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from partnerhub.events import OutgoingEvent, dumps
from tests.conftest import Infrastructure, running_service

Publish = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session")
async def funds(infrastructure: Infrastructure) -> AsyncIterator[httpx.AsyncClient]:
    async with running_service("funds") as client:
        yield client


@pytest.fixture(scope="session")
async def publish(infrastructure: Infrastructure) -> AsyncIterator[Publish]:
    """Publishes a CloudEvent the way incentives or the registry would."""
    producer = AIOKafkaProducer(
        bootstrap_servers=infrastructure.bootstrap_servers, acks="all", enable_idempotence=False
    )
    await producer.start()

    async def send(topic: str, type_: str, key: str, data: dict[str, Any], *, event_id: str | None = None,
                   subject: str | None = None, source: str = "tests") -> str:
        event = OutgoingEvent(topic=topic, type=type_, key=key, data=data, subject=subject,
                              id=event_id or str(uuid.uuid4()))
        await producer.send_and_wait(topic, dumps(event.envelope(source)), key=key.encode())
        return event.id

    yield send
    await producer.stop()
