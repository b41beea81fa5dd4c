"""Benchmark: sales from Kafka to priced accruals, against the raw limits of the same machine.

    .venv/bin/python bench/ingest.py [--sales 5000]

Starts Tansu and an embedded PostgreSQL (or uses KAFKA_BOOTSTRAP_SERVERS / --database-url), publishes
N `sale.recorded` events, and measures, in one run:
- raw Kafka: a plain aiokafka consumer reading the N messages;
- raw PostgreSQL: N single-row INSERTs, one transaction each (what an event costs at the least);
- Partner Hub: the incentives service's consumers taking the N sales to `accrued` (inbox, pricing,
  ledger, outbox, each in its own transaction).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from partnerhub.config import get_settings
from partnerhub.db import Database, asyncpg_dsn
from partnerhub.embedded import EmbeddedPostgres, TansuBroker, create_databases, drop_databases
from partnerhub.events import OutgoingEvent, dumps
from partnerhub.kafka import all_topics, ensure_topics
from partnerhub.migrations import upgrade
from services.incentives import usecases
from services.incentives.schemas import ProductIn, ProgramIn, RuleIn

START = datetime(2026, 1, 1, tzinfo=UTC)


async def seed(db: Database) -> tuple[uuid.UUID, list[uuid.UUID]]:
    partner, accounts = uuid.uuid4(), [uuid.uuid4() for _ in range(24)]
    async with db.transaction() as tx:
        await usecases.partner_changed(tx, "partner.registered", "seed-p", partner, seed_tier="gold",
                                       seed_status="active", certifications=[], effective_from=None)
        for account in accounts:
            await usecases.account_created(tx, f"seed-{account}", account, "commercial", partner)
        await usecases.put_product(tx, "BENCH", ProductIn(name="bench", category="software", rebate_eligible=True))
        await usecases.create_program(tx, ProgramIn(
            code="BENCH-BASE", name="bench", kind="base_rebate", valid_from=START,
            rules=[RuleIn(classification="commercial", rate="0.05")],
        ))
    return partner, accounts


async def publish(bootstrap: str, partner: uuid.UUID, accounts: list[uuid.UUID], count: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = []
        for i in range(count):
            account = accounts[i % len(accounts)]
            event = OutgoingEvent(topic="sales.recorded", type="sale.recorded", key=str(account), subject=f"S{i}",
                                  data={"sale_id": f"S{i}", "partner_id": str(partner), "account_id": str(account),
                                        "sku": "BENCH", "amount": f"{100 + i % 900}.00", "currency": "USD",
                                        "booked_at": (START + timedelta(minutes=i)).isoformat()})
            futures.append(await producer.send("sales.recorded", dumps(event.envelope("bench")),
                                               key=str(account).encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def raw_consume(bootstrap: str, count: int) -> float:
    consumer = AIOKafkaConsumer("sales.recorded", bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4()}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        seen, started = 0, None
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            if batch and started is None:
                started = time.perf_counter()
            seen += sum(len(messages) for messages in batch.values())
        return time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()


async def raw_inserts(url: str, count: int) -> float:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("CREATE TEMP TABLE raw_insert (id text PRIMARY KEY, amount numeric(18,2))")
        started = time.perf_counter()
        for i in range(count):
            async with conn.transaction():
                await conn.execute("INSERT INTO raw_insert VALUES ($1, $2)", f"S{i}", 100)
        return time.perf_counter() - started
    finally:
        await conn.close()


async def main(count: int, database_url: str | None) -> None:
    tmp = tempfile.mkdtemp(prefix="phi", dir="/tmp")
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
    name = f"ph_ingest_{secrets.token_hex(3)}"
    await create_databases(admin, [name])
    head, _, query = admin.partition("?")
    url = head.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    url += f"?{query}" if query else ""
    db = Database(url, "incentives")
    try:
        await ensure_topics(bootstrap, all_topics())
        await asyncio.to_thread(upgrade, "incentives", url)
        partner, accounts = await seed(db)
        produced = await publish(bootstrap, partner, accounts, count)
        consumed = await raw_consume(bootstrap, count)
        inserted = await raw_inserts(url, count)

        os.environ.update({"PARTNERHUB_INCENTIVES_DATABASE_URL": url, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                           "PARTNERHUB_KAFKA_IDEMPOTENCE": "false", "PARTNERHUB_LOG_LEVEL": "WARNING"})
        get_settings.cache_clear()
        from services.incentives.app import create_app

        app = create_app()
        async with app.router.lifespan_context(app):
            started, first = time.perf_counter(), None
            while True:
                async with db.transaction() as tx:
                    done = (await tx.session.execute(sa.text(
                        "SELECT count(*) FROM sales WHERE status = 'accrued'"))).scalar() or 0
                if done and first is None:
                    first = time.perf_counter()
                if done >= count:
                    break
                await asyncio.sleep(0.2)
            priced = time.perf_counter() - started
        print(f"sales:                                 {count:>8,}")
        print(f"publish (acks=all):                    {produced:8.2f} s  {count / produced:10,.0f} /s")
        print(f"raw Kafka consume:                     {consumed:8.2f} s  {count / consumed:10,.0f} /s")
        print(f"raw PostgreSQL insert, tx per row:     {inserted:8.2f} s  {count / inserted:10,.0f} /s")
        print(f"Partner Hub, Kafka -> priced accrual:  {priced:8.2f} s  {count / priced:10,.0f} /s "
              "(includes the consumer group join)")
        print(f"ratio to raw insert: {priced / inserted:.1f}x   ratio to raw consume: {priced / consumed:.1f}x")
    finally:
        await db.dispose()
        await drop_databases(admin, [name])
        if broker is not None:
            broker.stop()
        if postgres is not None:
            postgres.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=int, default=5000)
    parser.add_argument("--database-url", default=os.environ.get("PARTNERHUB_TEST_DATABASE_URL"))
    arguments = parser.parse_args()
    asyncio.run(main(arguments.sales, arguments.database_url))
