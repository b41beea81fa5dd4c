"""Benchmark: the outbox relay against raw aiokafka produce with the same acks, in one run.

    .venv/bin/python bench/relay.py [--events 100000] [--partners 4000]

Starts Tansu and an embedded PostgreSQL (or uses KAFKA_BOOTSTRAP_SERVERS / --database-url), migrates an
incentives database (it holds the shared `outbox` table) and measures, with N `accrual.adjusted` CloudEvents
of a recalculation's size and shape keyed by partner id on `incentives.accruals`:
- raw limit: one AIOKafkaProducer (acks=all, idempotence off, the project's linger and batch size) sending
  the N prebuilt payloads one send() each and awaiting every acknowledgement;
- Partner Hub: the N rows COPYed into the outbox in one committed transaction, then an OutboxRelay with the
  project's producer, timed until every row has `published_at` set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from partnerhub.config import Settings, get_settings
from partnerhub.db import asyncpg_dsn
from partnerhub.embedded import EmbeddedPostgres, TansuBroker, create_databases, drop_databases
from partnerhub.events import OutgoingEvent
from partnerhub.kafka import (
    PRODUCER_LINGER_MS,
    PRODUCER_MAX_BATCH_BYTES,
    all_topics,
    ensure_topics,
    make_producer,
)
from partnerhub.migrations import upgrade
from partnerhub.relay import OutboxRelay

TOPIC = "incentives.accruals"
START = datetime(2026, 1, 1, tzinfo=UTC)
PROGRAMS = ("BASE-REBATE-2026", "CAPABILITY-CLOUD")


@dataclass(frozen=True)
class OutboxEvent:
    event_id: str
    key: str
    payload: str


def recalculation_events(count: int, partners: int) -> list[OutboxEvent]:
    """What a recalculation writes: one `accrual.adjusted` per repriced sale, keyed by its partner."""
    partner_ids = [str(uuid.uuid4()) for _ in range(partners)]
    cause = str(uuid.uuid4())
    traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    events: list[OutboxEvent] = []
    for i in range(count):
        partner = partner_ids[i % partners]
        amount = 100 + (i * 7919) % 90000
        items = [
            {"program_code": code, "amount": f"{amount * rate:.2f}", "status": "accrued"}
            for code, rate in zip(PROGRAMS[: 1 + i % 2], (0.05, 0.02), strict=False)
        ]
        event = OutgoingEvent(
            topic=TOPIC, type="accrual.adjusted", key=partner, subject=f"SALE-{i:09d}",
            data={"sale_id": f"SALE-{i:09d}", "partner_id": partner, "account_id": str(uuid.uuid4()),
                  "sku": f"SKU-{i % 500:05d}", "booked_at": (START + timedelta(minutes=i)).isoformat(),
                  "currency": "USD", "amount": f"{amount}.00", "status": "accrued", "eligible": True,
                  "items": items, "cause": cause},
        )
        events.append(OutboxEvent(event.id, partner, json.dumps(event.envelope("incentives", traceparent))))
    return events


async def raw_produce(bootstrap: str, events: Sequence[OutboxEvent]) -> float:
    encoded = [(event.payload.encode(), event.key.encode()) for event in events]
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=PRODUCER_LINGER_MS,
        max_batch_size=PRODUCER_MAX_BATCH_BYTES,
    )
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(TOPIC, payload, key=key) for payload, key in encoded]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def fill_outbox(dsn: str, events: Sequence[OutboxEvent]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "outbox",
                records=[(e.event_id, TOPIC, e.key, e.payload) for e in events],
                columns=["event_id", "topic", "key", "payload"],
            )
    finally:
        await conn.close()


async def relay_publish(dsn: str, url: str, settings: Settings, count: int) -> float:
    producer = make_producer(settings)
    await producer.start()
    relay = OutboxRelay("incentives", url, producer, settings)
    watcher = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        task = asyncio.create_task(relay.run())
        # An existence check on the unpublished index: a count would read every row and slow the relay down.
        while await watcher.fetchval("SELECT EXISTS (SELECT FROM outbox WHERE published_at IS NULL)"):
            if task.done():
                task.result()
                raise RuntimeError("the relay stopped before publishing everything")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        relay.stop()
        await task
        published = await watcher.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
        if published != count:
            raise RuntimeError(f"{published} rows published, {count} expected")
        return elapsed
    finally:
        await watcher.close()
        await producer.stop()


async def main(count: int, partners: int, database_url: str | None) -> None:
    tmp = tempfile.mkdtemp(prefix="phr", dir="/tmp")
    postgres = broker = None
    if database_url is None:
        postgres = EmbeddedPostgres(Path(tmp) / "pg").start()
        admin = postgres.url("postgres", "postgresql")
    else:
        admin = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap is None:
        broker = TansuBroker()
        bootstrap = broker.start()
    name = f"ph_relay_{secrets.token_hex(3)}"
    await create_databases(admin, [name])
    head, _, query = admin.partition("?")
    url = head.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    url += f"?{query}" if query else ""
    try:
        await ensure_topics(bootstrap, all_topics())
        await asyncio.to_thread(upgrade, "incentives", url)
        os.environ.update({"PARTNERHUB_INCENTIVES_DATABASE_URL": url, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                           "PARTNERHUB_KAFKA_IDEMPOTENCE": "false", "PARTNERHUB_LOG_LEVEL": "WARNING"})
        get_settings.cache_clear()
        settings = get_settings()
        events = recalculation_events(count, partners)
        sizes = sorted(len(event.payload) for event in events)

        raw = await raw_produce(bootstrap, events)
        await fill_outbox(asyncpg_dsn(url), events)
        relayed = await relay_publish(asyncpg_dsn(url), url, settings, count)

        print(f"events:                                {count:>8,}  ({partners:,} partner keys, "
              f"payload {sizes[0]}-{sizes[-1]} bytes, {TOPIC})")
        print(f"raw aiokafka produce (acks=all):       {raw:8.2f} s  {count / raw:10,.0f} /s")
        print(f"Partner Hub outbox relay (acks=all):   {relayed:8.2f} s  {count / relayed:10,.0f} /s")
        print(f"relay / raw throughput: {raw / relayed:.2f}   "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: both share the machine)")
    finally:
        await drop_databases(admin, [name])
        if broker is not None:
            broker.stop()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partners", type=int, default=4000)
    parser.add_argument("--database-url", default=os.environ.get("PARTNERHUB_TEST_DATABASE_URL"))
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.partners, arguments.database_url))
