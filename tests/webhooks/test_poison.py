"""Hostile messages on every topic webhooks consumes: what is not an event is dead-lettered with its reason, an
event with odd data is delivered as it came, and the good events around them are delivered all the same."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from standardwebhooks import Webhook

from partnerhub.db import asyncpg_dsn
from services.webhooks.domain import PUBLIC_EVENTS
from tests.conftest import Infrastructure, eventually
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import Tokens, event_ids, new_path, subscribe

# One type per public topic, as its producer sends it.
PUBLIC_TOPICS = {topic: types[0] for topic, types in PUBLIC_EVENTS.items()}
NOT_EVENTS = [b"not json at all", b"[1, 2, 3]", b'{"specversion": "1.0", "id": "x"}', b"\xff\xfe\x00"]


@pytest.fixture(scope="module")
async def producer(infrastructure: Infrastructure) -> AsyncIterator[AIOKafkaProducer]:
    raw = AIOKafkaProducer(bootstrap_servers=infrastructure.bootstrap_servers, acks="all", enable_idempotence=False)
    await raw.start()
    yield raw
    await raw.stop()


def event(type_: str, partner: uuid.UUID, **data: object) -> tuple[str, bytes]:
    event_id = str(uuid.uuid4())
    # Where each kind of event names its partner (domain.event_partners).
    key = {"partner": "id", "account": "owner_partner_id"}.get(type_.split(".")[0], "partner_id")
    body = {"specversion": "1.0", "id": event_id, "source": "tests", "type": type_, "subject": str(partner),
            "time": "2026-12-01T10:00:00Z", "datacontenttype": "application/json",
            "data": {key: str(partner), **data}}
    return event_id, json.dumps(body).encode()


@pytest.mark.parametrize("topic", sorted(PUBLIC_TOPICS))
async def test_poison_is_dead_lettered_and_the_good_events_around_it_are_delivered(
    webhooks: httpx.AsyncClient, receiver: Receiver, producer: AIOKafkaProducer, tokens: Tokens,
    infrastructure: Infrastructure, topic: str,
) -> None:
    partner = uuid.uuid4()
    type_ = PUBLIC_TOPICS[topic]
    path = new_path()
    subscription = await subscribe(webhooks, tokens(), receiver.url(path), ["*"], partner)
    key = str(partner).encode()

    before, first = event(type_, partner)
    await producer.send_and_wait(topic, first, key=key)
    for bad in NOT_EVENTS:
        await producer.send_and_wait(topic, bad, key=key)
    # Well-formed, but odd: integers beyond 64 bits, an escaped NUL, deep nesting, a long string.
    odd, odd_body = event(type_, partner, big=123456789012345678901234567890, nul="a\u0000b",
                          deep=[[[[{"x": None}]]]], long="y" * 100_000)
    await producer.send_and_wait(topic, odd_body, key=key)
    after, last = event(type_, partner)
    await producer.send_and_wait(topic, last, key=key)

    await eventually(lambda: {before, odd, after} <= set(event_ids(receiver, path)), within=60)
    odd_request = next(r for r in receiver.at(path) if r.headers["webhook-id"] == odd)
    delivered = Webhook(subscription["secret"]).verify(odd_request.body, odd_request.headers)
    assert delivered["data"]["big"] == 123456789012345678901234567890 and delivered["data"]["nul"] == "a\u0000b"

    connection = await asyncpg.connect(asyncpg_dsn(infrastructure.database_urls["webhooks"]))
    try:
        async def lettered() -> list[str]:
            rows = await connection.fetch(
                "SELECT reason FROM dead_letters WHERE consumer = $1 AND topic = $2", f"webhooks.{topic}", topic)
            return [r["reason"] for r in rows] if len(rows) >= len(NOT_EVENTS) else []

        reasons = await eventually(lettered)
    finally:
        await connection.close()
    assert all(reason for reason in reasons)
