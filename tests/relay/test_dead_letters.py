"""Dead letters are transactional: a bad message's letter is an outbox row written with the message's record, so
a message delivered again (its consumer died before committing the offset) is never lettered twice, whether it
is not even an event, an event a per-event handler refuses, or one a topic's batch handler refuses; and the
relay sends the letter as the consumed bytes, with the original headers and the `dlq.*` ones."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from partnerhub.config import Settings
from partnerhub.consumer import ConsumerRunner, Rejected, Subscription
from partnerhub.db import Database, Transaction
from partnerhub.events import CloudEvent, OutgoingEvent, dumps
from partnerhub.kafka import dead_letter_topic, ensure_topics, make_producer
from partnerhub.relay import OutboxRelay
from tests.conftest import Infrastructure, eventually
from tests.relay.conftest import Outbox


@pytest.fixture
async def db(outbox: Outbox) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(outbox.dsn)
    await conn.execute("TRUNCATE outbox, inbox, dead_letters")
    yield conn
    await conn.close()


def record(topic: str, offset: int, value: bytes | None, key: bytes | None = b"acct-1",
           headers: tuple[tuple[str, bytes], ...] = ()) -> ConsumerRecord:  # type: ignore[type-arg]
    return ConsumerRecord(topic=topic, partition=0, offset=offset, timestamp=0, timestamp_type=0, key=key,
                          value=value, checksum=None, serialized_key_size=len(key or b""),
                          serialized_value_size=len(value or b""), headers=headers)


def event(topic: str, type_: str, data: dict[str, object]) -> tuple[str, bytes]:
    outgoing = OutgoingEvent(topic=topic, type=type_, key="acct-1", data=data)
    return outgoing.id, dumps(outgoing.envelope("tests"))


async def letters(db: asyncpg.Connection, topic: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT raw_key, raw_value, headers::text AS headers FROM outbox "
                          "WHERE topic = $1 AND headers IS NOT NULL ORDER BY id", dead_letter_topic(topic))


async def test_a_redelivered_bad_message_is_lettered_once(settings: Settings, outbox: Outbox,
                                                          db: asyncpg.Connection) -> None:
    topic = f"dltest-{secrets.token_hex(4)}"

    async def refuse(tx: Transaction, event: CloudEvent) -> None:
        raise Rejected("refused by the test")

    database = Database(outbox.url, "dltest")
    runner = ConsumerRunner("dltest", topic, database, settings, [Subscription(topic, {"thing.happened": refuse})])
    garbage = record(topic, 7, b"\xff\xfe not json \x00", key=b"\x00\xffbinary",
                     headers=(("origin", b"\x01\x02"), ("dlq.reason", b"an earlier letter's")))
    event_id, value = event(topic, "thing.happened", {"n": 1})
    refused = record(topic, 8, value)
    try:
        for _ in range(2):  # the consumer died before committing: everything comes again
            await runner.process(garbage)
            await runner.process(refused)
        # The same event published again at another offset (a producer retry): the inbox knows its id.
        await runner.process(record(topic, 9, value))
    finally:
        await database.dispose()

    rows = await letters(db, topic)
    assert [(row["raw_key"], row["raw_value"]) for row in rows] == [(b"\x00\xffbinary", garbage.value),
                                                                    (b"acct-1", value)]
    first = dict(json.loads(rows[0]["headers"]))
    assert "not JSON" in base64.b64decode(first["dlq.reason"]).decode()
    assert base64.b64decode(first["origin"]) == b"\x01\x02"
    recorded = await db.fetch('SELECT "offset", event_id, reason FROM dead_letters ORDER BY "offset"')
    assert [(r["offset"], r["event_id"]) for r in recorded] == [(7, None), (8, event_id)]
    assert recorded[1]["reason"] == "refused by the test"
    assert await db.fetchval("SELECT outcome FROM inbox WHERE event_id = $1", event_id) == "dead_lettered"


async def test_a_batch_handlers_refusals_commit_with_its_batch(settings: Settings, outbox: Outbox,
                                                               db: asyncpg.Connection) -> None:
    topic = f"dltest-{secrets.token_hex(4)}"
    applied: list[object] = []

    async def apply_all(tx: Transaction, events: list[CloudEvent]) -> Mapping[str, str]:
        applied.extend(e.data["n"] for e in events if e.data["n"] != 2)
        return {e.id: "two is refused" for e in events if e.data["n"] == 2}

    async def one(tx: Transaction, event: CloudEvent) -> None:
        raise AssertionError("the batch handler takes them")

    database = Database(outbox.url, "dltest")
    runner = ConsumerRunner("dltest", topic, database, settings,
                            [Subscription(topic, {"thing.happened": one}, batch=apply_all, inbox=False)])
    messages = [record(topic, offset, event(topic, "thing.happened", {"n": n})[1])
                for offset, n in enumerate([1, 2, 3])]
    try:
        await runner.process_batch(messages)
        await runner.process_batch(messages)  # redelivered: the topic keeps no inbox, the position is known
    finally:
        await database.dispose()
    assert applied == [1, 3, 1, 3]  # the handler's own state makes the repeat a no-op (a sale by its sale_id)
    assert [row["raw_value"] for row in await letters(db, topic)] == [messages[1].value]


async def test_the_relay_sends_a_letter_as_the_consumed_bytes(infrastructure: Infrastructure, settings: Settings,
                                                              outbox: Outbox, db: asyncpg.Connection) -> None:
    topic = f"dltest-{secrets.token_hex(4)}"
    await ensure_topics(infrastructure.bootstrap_servers, {topic: 1, dead_letter_topic(topic): 1})
    database = Database(outbox.url, "dltest")
    runner = ConsumerRunner("dltest", topic, database, settings, [Subscription(topic, {})])
    marker = uuid.uuid4().hex.encode()
    garbage = record(topic, 3, b"\xff" + marker, key=None, headers=(("origin", b"\x01\x02"),))
    try:
        await runner.process(garbage)
    finally:
        await database.dispose()

    producer = make_producer(settings)
    await producer.start()
    relay = OutboxRelay("dltest", outbox.url, producer, settings)
    task = asyncio.create_task(relay.run())
    reader = AIOKafkaConsumer(dead_letter_topic(topic), bootstrap_servers=infrastructure.bootstrap_servers,
                              group_id=f"dltest-{secrets.token_hex(4)}", auto_offset_reset="earliest")
    await reader.start()
    try:
        letter = await asyncio.wait_for(reader.getone(), 30)
        await eventually(lambda: relay.backlog == 0, within=10)
    finally:
        await reader.stop()
        relay.stop()
        await asyncio.wait_for(task, 30)
        await producer.stop()
    assert letter.value == b"\xff" + marker and letter.key is None
    headers = dict(letter.headers)
    assert headers["origin"] == b"\x01\x02" and headers["dlq.topic"] == topic.encode()
    assert headers["dlq.offset"] == b"3" and b"not JSON" in headers["dlq.reason"]
