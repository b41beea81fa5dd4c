"""Benchmark: the outbox relay against raw aiokafka produce with the same acks, in one run.

    .venv/bin/python bench/relay.py [--events 100000] [--partners 4000]

Starts Tansu and an embedded PostgreSQL (or uses KAFKA_BOOTSTRAP_SERVERS / --database-url), migrates an
incentives database (it holds the shared `outbox` table; dropped at the end, Ctrl-C included) and measures,
with N `accrual.adjusted` CloudEvents of a recalculation's size and shape keyed by partner id on
`incentives.accruals`:
- raw limit: one AIOKafkaProducer (acks=all, idempotence off, the project's linger and batch size) sending
  the N prebuilt payloads one send() each and awaiting every acknowledgement;
- Partner Hub: the N events COPYed into the outbox in one committed transaction as the services write a large
  transaction's events (bundles of 500 per row; `--single` writes one row per event instead), then an
  OutboxRelay with the project's producer, timed until every row has `published_at` set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import add_database_url, environment, outbox_drained, run
from partnerhub.config import Settings, get_settings
from partnerhub.db import bundles
from partnerhub.events import OutgoingEvent
from partnerhub.kafka import PRODUCER_LINGER_MS, PRODUCER_MAX_BATCH_BYTES, make_producer
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


async def fill_outbox(dsn: str, events: Sequence[OutboxEvent], single: bool) -> int:
    """Writes the events; returns the rows that took."""
    records = [(e.event_id, TOPIC, e.key, e.payload) for e in events]
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            if single:
                await conn.copy_records_to_table("outbox", records=records,
                                                 columns=["event_id", "topic", "key", "payload"])
                return len(records)
            rows = bundles(records)
            await conn.copy_records_to_table("outbox", records=rows,
                                             columns=["event_id", "topic", "key", "payload", "keys", "payloads"])
            return len(rows)
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
        while not await outbox_drained(watcher):
            if task.done():
                task.result()
                raise RuntimeError("the relay stopped before publishing everything")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        relay.stop()
        await task
        published = await watcher.fetchval(
            "SELECT sum(coalesce(cardinality(keys), 1)) FROM outbox WHERE published_at IS NOT NULL")
        if published != count:
            raise RuntimeError(f"{published} events published, {count} expected")
        return elapsed
    finally:
        await watcher.close()
        await producer.stop()


async def main(count: int, partners: int, database_url: str | None, single: bool) -> None:
    # The relay's producer without idempotence on any broker, like the raw producer it is compared with.
    async with environment("relay", ["incentives"], database_url,
                           {"PARTNERHUB_KAFKA_IDEMPOTENCE": "false"}) as env:
        url, dsn = env.database_urls["incentives"], env.dsn("incentives")
        settings = get_settings()
        events = recalculation_events(count, partners)
        sizes = sorted(len(event.payload) for event in events)

        raw = await raw_produce(env.bootstrap_servers, events)
        rows = await fill_outbox(dsn, events, single)
        relayed = await relay_publish(dsn, url, settings, count)

        print(f"events:                                {count:>8,}  ({partners:,} partner keys, "
              f"payload {sizes[0]}-{sizes[-1]} bytes, {TOPIC}; {rows:,} outbox rows)")
        print(f"raw aiokafka produce (acks=all):       {raw:8.2f} s  {count / raw:10,.0f} /s")
        print(f"Partner Hub outbox relay (acks=all):   {relayed:8.2f} s  {count / relayed:10,.0f} /s")
        print(f"relay / raw throughput: {raw / relayed:.2f}   "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: both share the machine)")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partners", type=int, default=4000)
    parser.add_argument("--single", action="store_true", help="one outbox row per event instead of bundles")
    add_database_url(parser)
    return parser


if __name__ == "__main__":
    arguments = parser().parse_args()
    run(main(arguments.events, arguments.partners, arguments.database_url, arguments.single))
