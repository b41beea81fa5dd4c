"""The outbox relay on a real PostgreSQL and a real broker: order per key, acknowledgement before marking,
a frozen broker only delays, one elected relay per database, replay of the kept outbox, and a flushing stop."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import REGISTRY

from partnerhub.config import Settings
from partnerhub.db import BUNDLE_SIZE, OUTBOX_CHANNEL, bundles
from partnerhub.embedded import TansuBroker
from partnerhub.kafka import PRODUCER_LINGER_MS, PRODUCER_MAX_BATCH_BYTES, ensure_topics, make_producer
from partnerhub.relay import OutboxRelay, kafka_partition
from tests.conftest import Infrastructure, eventually
from tests.relay.conftest import Outbox

PARTITIONS = 6
KEYS = [str(uuid.uuid4()) for _ in range(40)]


@pytest.fixture
async def db(outbox: Outbox) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(outbox.dsn)
    await conn.execute("TRUNCATE outbox")
    yield conn
    await conn.close()


async def new_topic(bootstrap: str) -> str:
    topic = f"relaytest-{secrets.token_hex(4)}"
    await ensure_topics(bootstrap, {topic: PARTITIONS})
    return topic


async def write(db: asyncpg.Connection, topic: str, per_key: int, first_seq: int = 0) -> int:
    """Commits events the way a recalculation does (COPY, one transaction, one NOTIFY); each key's events carry
    increasing sequence numbers in id order."""
    records = [
        (str(uuid.uuid4()), topic, key, json.dumps({"key": key, "seq": seq}))
        for seq in range(first_seq, first_seq + per_key)
        for key in KEYS
    ]
    async with db.transaction():
        await db.copy_records_to_table("outbox", records=records, columns=["event_id", "topic", "key", "payload"])
        await db.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
    return len(records)


async def unpublished(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))


async def all_published(db: asyncpg.Connection) -> bool:
    return await unpublished(db) == 0


@dataclass(frozen=True)
class Message:
    partition: int
    key: str
    seq: int


async def consume(bootstrap: str, topic: str, count: int) -> list[Message]:
    """Reads the topic from the start until at least `count` messages arrived and a second passes with none."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"relaytest-{uuid.uuid4()}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    messages: list[Message] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            if not batches and len(messages) >= count:
                break
            for records in batches.values():
                for record in records:
                    assert record.key is not None and record.value is not None
                    assert list(record.headers) == [("content-type", b"application/cloudevents+json")]
                    body = json.loads(record.value)
                    assert record.key.decode() == body["key"]
                    messages.append(Message(record.partition, body["key"], body["seq"]))
        return messages
    finally:
        await consumer.stop()


def by_key(messages: list[Message]) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = defaultdict(list)
    for message in messages:
        seqs[message.key].append(message.seq)
    return seqs


def first_seen(seqs: list[int]) -> list[int]:
    """What a consumer's inbox applies: each event once, at its first delivery."""
    return list(dict.fromkeys(seqs))


@asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(relay.run())
    try:
        yield task
    finally:
        relay.stop()
        await asyncio.wait_for(task, 60)


@asynccontextmanager
async def started(producer: AIOKafkaProducer) -> AsyncIterator[AIOKafkaProducer]:
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


def published_total(topic: str) -> float | None:
    return REGISTRY.get_sample_value("partnerhub_events_published_total", {"service": "relaytest", "topic": topic})


async def test_a_backlog_goes_out_in_order_per_key_and_stays_in_the_outbox(
    infrastructure: Infrastructure, settings: Settings, outbox: Outbox, db: asyncpg.Connection,
) -> None:
    bootstrap = infrastructure.bootstrap_servers
    topic = await new_topic(bootstrap)
    # More rows than a read, a read-ahead and a partition batch hold, so every one of them turns over.
    written = await write(db, topic, per_key=250)
    async with started(make_producer(settings)) as producer:
        relay = OutboxRelay("relaytest", outbox.url, producer, settings)
        async with running(relay):
            await eventually(lambda: all_published(db), within=120)
            await eventually(lambda: relay.backlog == 0, within=10)
    messages = await consume(bootstrap, topic, written)

    assert len(messages) == written, "without a failure every row goes out exactly once"
    partitions = list(range(PARTITIONS))
    for key, seqs in by_key(messages).items():
        assert seqs == list(range(250)), f"{key} out of order"
    assert all(message.partition == kafka_partition(message.key.encode(), partitions) for message in messages)
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL") == written
    assert published_total(topic) == written


async def test_bundles_go_out_message_by_message_in_order_with_single_rows_between_them(
    infrastructure: Infrastructure, settings: Settings, outbox: Outbox, db: asyncpg.Connection,
) -> None:
    """A large transaction's events are bundled (one row per BUNDLE_SIZE events): the relay sends each as its own
    message, in order per key also across single rows written before and after, and marks a bundle published
    only once every one of its messages is acknowledged."""
    bootstrap = infrastructure.bootstrap_servers
    topic = await new_topic(bootstrap)
    per_key = 60  # 40 keys x 60: several bundles, each larger than a read of single rows
    records = [(str(uuid.uuid4()), topic, key, json.dumps({"key": key, "seq": seq}))
               for seq in range(1, per_key + 1) for key in KEYS]
    async with db.transaction():
        await write(db, topic, per_key=1, first_seq=0)
        await db.copy_records_to_table("outbox", records=bundles(records),
                                       columns=["event_id", "topic", "key", "payload", "keys", "payloads"])
    await write(db, topic, per_key=1, first_seq=per_key + 1)
    bundle_rows = await db.fetchval("SELECT count(*) FROM outbox WHERE keys IS NOT NULL")
    assert bundle_rows == -(-len(records) // BUNDLE_SIZE) > 1
    written = len(records) + 2 * len(KEYS)
    async with started(make_producer(settings)) as producer:
        relay = OutboxRelay("relaytest", outbox.url, producer, settings)
        async with running(relay):
            await eventually(lambda: all_published(db), within=120)
            await eventually(lambda: relay.backlog == 0, within=10)
    messages = await consume(bootstrap, topic, written)

    assert len(messages) == written
    for key, seqs in by_key(messages).items():
        assert seqs == list(range(per_key + 2)), f"{key} out of order"
    assert published_total(topic) == written


@contextmanager
def frozen(broker: TansuBroker) -> Iterator[None]:
    assert broker.process is not None
    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)


async def test_rows_written_while_the_broker_is_frozen_wait_unpublished_and_follow_in_order(
    settings: Settings, outbox: Outbox, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture,
) -> None:
    broker = TansuBroker()
    bootstrap = broker.start()
    try:
        topic = await new_topic(bootstrap)
        # The project's producer settings with a short request timeout, so the freeze fails whole passes (not
        # only single requests) and the relay has to start over, as it does after any longer broker outage.
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=PRODUCER_LINGER_MS,
            max_batch_size=PRODUCER_MAX_BATCH_BYTES, request_timeout_ms=2000, retry_backoff_ms=200,
        )
        async with started(producer):
            relay = OutboxRelay("relaytest", outbox.url, producer, settings)
            async with running(relay):
                before = await write(db, topic, per_key=20)
                await eventually(lambda: all_published(db), within=60)
                with caplog.at_level(logging.WARNING, logger="partnerhub.relay"), frozen(broker):
                    during = await write(db, topic, per_key=20, first_seq=20)
                    await eventually(lambda: relay.backlog == during, within=30)
                    await eventually(lambda: "outbox relay failed; retrying" in caplog.text, within=60)
                    assert await unpublished(db) == during, "nothing is marked published that the broker lacks"
                await eventually(lambda: all_published(db), within=120)
                await eventually(lambda: relay.backlog == 0, within=10)
        messages = await consume(bootstrap, topic, before + during)
    finally:
        broker.stop()

    for key, seqs in by_key(messages).items():
        # A batch whose acknowledgement the freeze swallowed may arrive twice; never out of order.
        assert first_seen(seqs) == list(range(40)), f"{key}: {seqs}"


async def test_one_relay_per_database_publishes_and_another_takes_over(
    infrastructure: Infrastructure, settings: Settings, outbox: Outbox, db: asyncpg.Connection,
) -> None:
    bootstrap = infrastructure.bootstrap_servers
    topic = await new_topic(bootstrap)
    async with started(make_producer(settings)) as producer:
        first = OutboxRelay("relaytest", outbox.url, producer, settings)
        second = OutboxRelay("relaytest", outbox.url, producer, settings)
        async with running(second):
            async with running(first):
                await eventually(lambda: first.is_leader or second.is_leader, within=30)
                leader, standby = (first, second) if first.is_leader else (second, first)
                await write(db, topic, per_key=5)
                await eventually(lambda: all_published(db), within=60)
                assert leader.is_leader and not standby.is_leader
                leader.stop()
                await eventually(lambda: standby.is_leader, within=30)
                await write(db, topic, per_key=5, first_seq=5)
                await eventually(lambda: all_published(db), within=60)
    messages = await consume(bootstrap, topic, 10 * len(KEYS))
    assert {key: first_seen(seqs) for key, seqs in by_key(messages).items()} == {key: list(range(10)) for key in KEYS}


async def test_a_replay_republishes_every_kept_row_in_order(
    infrastructure: Infrastructure, settings: Settings, outbox: Outbox, db: asyncpg.Connection,
) -> None:
    bootstrap = infrastructure.bootstrap_servers
    topic = await new_topic(bootstrap)
    written = await write(db, topic, per_key=10)
    async with started(make_producer(settings)) as producer:
        async with running(OutboxRelay("relaytest", outbox.url, producer, settings)):
            await eventually(lambda: all_published(db), within=60)
        # What `partnerhub up` asks for when it started a fresh broker that remembers nothing.
        replaying = OutboxRelay("relaytest", outbox.url, producer, settings.model_copy(update={"outbox_replay": True}))
        async with running(replaying):
            await eventually(lambda: replaying.is_leader, within=30)
            await eventually(lambda: all_published(db), within=60)
    messages = await consume(bootstrap, topic, 2 * written)
    assert all(seqs == list(range(10)) * 2 for seqs in by_key(messages).values())
    assert len(messages) == 2 * written


async def test_a_stopping_relay_flushes_its_backlog_first(
    infrastructure: Infrastructure, settings: Settings, outbox: Outbox, db: asyncpg.Connection,
) -> None:
    topic = await new_topic(infrastructure.bootstrap_servers)
    async with started(make_producer(settings)) as producer:
        relay = OutboxRelay("relaytest", outbox.url, producer, settings)
        task = asyncio.create_task(relay.run())
        await eventually(lambda: relay.is_leader, within=30)
        await write(db, topic, per_key=100)
        relay.stop()
        await asyncio.wait_for(task, 120)
    assert await unpublished(db) == 0
