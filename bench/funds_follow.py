"""Benchmark: how fast funds follows incentives' accruals, against the raw limit of the same machine.

    .venv/bin/python bench/funds_follow.py [--events 100000] [--partners 2000]

Starts Tansu and an embedded PostgreSQL (or uses KAFKA_BOOTSTRAP_SERVERS / --database-url), migrates a
funds database (dropped at the end, Ctrl-C included) with a couple of USD accrual funds, publishes N
`accrual.recorded` events (one sale each, keyed by partner) to `incentives.accruals`, and measures, in one run:
- raw limit: a plain aiokafka consumer doing getmany + json.loads + one asyncpg COPY per batch into a
  table shaped like funds' sales replica (what following the topic costs at the very least);
- Partner Hub: the funds service (its app's lifespan, in process) from start until every event is applied
  (inbox, sales replica, credits per fund, balances, ledger), then checks the earned balances against
  the figures computed here, in Decimal, while publishing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import add_database_url, environment, run
from partnerhub.config import get_settings
from partnerhub.db import Database, asyncpg_dsn
from partnerhub.events import OutgoingEvent, dumps
from partnerhub.money import round_money
from services.funds import usecases
from services.funds.schemas import FundIn

TOPIC = "incentives.accruals"
CONSUMER = f"funds.{TOPIC}"
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class AccrualFund:
    code: str
    rate: Decimal
    valid_from: datetime


# A couple of USD accrual funds; the second opens in April, so the earlier sales earn only in the first.
FUNDS = (
    AccrualFund("BENCH-MDF", Decimal("0.02"), START),
    AccrualFund("BENCH-JMF", Decimal("0.015"), datetime(2026, 4, 1, tzinfo=UTC)),
)
VALID_TO = datetime(2027, 1, 1, tzinfo=UTC)
RAW_COLUMNS = ["sale_id", "partner_id", "currency", "booked_at", "amount", "status", "eligible_revenue",
               "event_id", "event_time"]


async def seed(db: Database) -> None:
    async with db.transaction() as tx:
        for fund in FUNDS:
            await usecases.create_fund(tx, FundIn(
                code=fund.code, kind="mdf", currency="USD", budget=Decimal("100000000.00"),
                valid_from=fund.valid_from, valid_to=VALID_TO, accrual_rate=fund.rate,
            ))


def accrual(index: int, partner: uuid.UUID) -> dict[str, Any]:
    """One sale as incentives reports it: mostly accrued USD, some not eligible, some in EUR."""
    status = "not_eligible" if index % 10 == 9 else "accrued"
    amount = Decimal(f"{100 + index % 9000}.{index % 100:02d}")
    item = Decimal("0.00") if status != "accrued" else round_money(amount * Decimal("0.05"))
    return {
        "sale_id": f"S{index}", "partner_id": str(partner), "account_id": str(uuid.UUID(int=index)),
        "sku": "BENCH", "booked_at": (START + timedelta(minutes=5 * index % 500_000)).isoformat(),
        "currency": "EUR" if index % 20 == 7 else "USD", "amount": f"{amount:.2f}", "status": status,
        "eligible": status == "accrued",
        "items": [{"program_code": "BASE-2026", "amount": f"{item:.2f}", "status": status}],
    }


def expected_earned(data: dict[str, Any]) -> dict[str, Decimal]:
    if not data["eligible"] or data["currency"] != "USD":
        return {}
    booked_at = datetime.fromisoformat(data["booked_at"])
    revenue = Decimal(data["amount"])
    return {f.code: round_money(f.rate * revenue) for f in FUNDS if f.valid_from <= booked_at < VALID_TO}


@dataclass
class Published:
    seconds: float
    earned: dict[str, Decimal]
    # The last event of each partition: once all of them are applied, every event is (a partition is in order).
    last: list[str]


async def publish(bootstrap: str, count: int, partners: int) -> Published:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5,
                                max_batch_size=256 * 1024)
    ids = [uuid.uuid4() for _ in range(partners)]
    earned: dict[str, Decimal] = defaultdict(Decimal)
    await producer.start()
    started = time.perf_counter()
    try:
        futures, event_ids = [], []
        for i in range(count):
            partner = ids[i % partners]
            data = accrual(i, partner)
            for code, amount in expected_earned(data).items():
                earned[code] += amount
            event = OutgoingEvent(topic=TOPIC, type="accrual.recorded", key=str(partner), subject=data["sale_id"],
                                  data=data)
            event_ids.append(event.id)
            futures.append(await producer.send(TOPIC, dumps(event.envelope("incentives")), key=str(partner).encode()))
        sent = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    seconds = time.perf_counter() - started
    last = {metadata.partition: event_id for metadata, event_id in zip(sent, event_ids, strict=True)}
    return Published(seconds, dict(earned), list(last.values()))


def raw_row(value: bytes) -> tuple[Any, ...]:
    envelope = json.loads(value)
    data = envelope["data"]
    amount = Decimal(data["amount"])
    return (
        data["sale_id"], uuid.UUID(data["partner_id"]), data["currency"], datetime.fromisoformat(data["booked_at"]),
        amount, data["status"], amount if data["eligible"] else Decimal("0.00"), envelope["id"],
        datetime.fromisoformat(envelope["time"]),
    )


async def raw_follow(bootstrap: str, url: str, count: int, batch: int) -> tuple[float, float]:
    """getmany + json.loads + one COPY per batch into a table shaped like the sales replica: the floor."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4()}",
                                auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=batch)
    await conn.execute("CREATE TABLE raw_sale_revenue (LIKE sale_revenue INCLUDING ALL)")
    await consumer.start()
    try:
        copied, started, cpu = 0, None, 0.0
        while copied < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=batch)
            if batches and started is None:
                started, cpu = time.perf_counter(), time.process_time()
            rows = [raw_row(m.value) for messages in batches.values() for m in messages]
            if rows:
                await conn.copy_records_to_table("raw_sale_revenue", records=rows, columns=RAW_COLUMNS)
                copied += len(rows)
        return time.perf_counter() - (started or time.perf_counter()), time.process_time() - cpu
    finally:
        await consumer.stop()
        await conn.execute("DROP TABLE raw_sale_revenue")
        await conn.close()


async def applied(db: Database, event_ids: list[str]) -> int:
    """How many of these events the funds consumer has applied (a cheap look-up by primary key)."""
    async with db.transaction() as tx:
        found = await tx.session.execute(
            sa.text("SELECT count(*) FROM inbox WHERE consumer = :consumer AND event_id = ANY(:ids)"),
            {"consumer": CONSUMER, "ids": event_ids},
        )
        return int(found.scalar() or 0)


async def follow(db: Database, last: list[str]) -> tuple[float, float, float]:
    """Runs the funds service until it has applied every event: seconds from start, seconds from the first
    event applied, and the CPU seconds this process spent."""
    from services.funds.app import create_app

    app = create_app()
    started, first, cpu = time.perf_counter(), None, time.process_time()
    async with app.router.lifespan_context(app):
        while True:
            if first is None and await applied_any(db):
                first = time.perf_counter()
            if await applied(db, last) == len(last):
                break
            await asyncio.sleep(0.25)
        finished = time.perf_counter()
    return finished - started, finished - (first or started), time.process_time() - cpu


async def applied_any(db: Database) -> bool:
    async with db.transaction() as tx:
        found = await tx.session.execute(
            sa.text("SELECT 1 FROM inbox WHERE consumer = :consumer LIMIT 1"), {"consumer": CONSUMER}
        )
        return found.scalar() is not None


async def count_applied(db: Database) -> int:
    async with db.transaction() as tx:
        found = await tx.session.execute(
            sa.text("SELECT count(*) FROM inbox WHERE consumer = :consumer AND outcome = 'applied'"),
            {"consumer": CONSUMER},
        )
        return int(found.scalar() or 0)


async def check_earned(db: Database, count: int, expected: dict[str, Decimal]) -> list[str]:
    async with db.transaction() as tx:
        rows = (await tx.session.execute(sa.text(
            "SELECT fund_code, sum(earned) AS earned FROM partner_balances GROUP BY fund_code"
        ))).all()
        ledger = (await tx.session.execute(sa.text(
            "SELECT fund_code, sum(amount) AS amount FROM fund_ledger WHERE kind IN ('credit', 'debit') "
            "GROUP BY fund_code"
        ))).all()
    found = {r.fund_code: r.earned for r in rows}
    posted = {r.fund_code: r.amount for r in ledger}
    problems = []
    if (done := await count_applied(db)) != count:
        problems.append(f"{done:,} events applied, not {count:,}")
    for fund in FUNDS:
        want = expected.get(fund.code, Decimal("0.00"))
        if found.get(fund.code, Decimal(0)) != want or posted.get(fund.code, Decimal(0)) != want:
            problems.append(f"{fund.code}: earned {found.get(fund.code)}, ledger {posted.get(fund.code)}, "
                            f"expected {want}")
    return problems


async def main(count: int, partners: int, database_url: str | None) -> int:
    # The service's producers without idempotence on any broker, like this bench's own publisher.
    async with environment("follow", ["funds"], database_url, {"PARTNERHUB_KAFKA_IDEMPOTENCE": "false"}) as env:
        url = env.database_urls["funds"]
        batch = get_settings().consumer_batch_size
        db = Database(url, "funds")
        try:
            await seed(db)
            print(f"publishing {count:,} accrual.recorded events for {partners:,} partners…", flush=True)
            published = await publish(env.bootstrap_servers, count, partners)
            produced = published.seconds
            print("raw limit: getmany + json.loads + COPY…", flush=True)
            raw, raw_cpu = await raw_follow(env.bootstrap_servers, url, count, batch)
            print("funds service following incentives.accruals…", flush=True)
            total, steady, cpu = await follow(db, published.last)
            problems = await check_earned(db, count, published.earned)

            print(f"events:                                       {count:>9,}")
            print(f"publish (acks=all):                           {produced:8.2f} s  {count / produced:10,.0f} /s")
            print(f"raw limit (getmany + json.loads + COPY):      {raw:8.2f} s  {count / raw:10,.0f} /s")
            print(f"funds, from start (group join included):      {total:8.2f} s  {count / total:10,.0f} /s")
            print(f"funds, from the first event applied:          {steady:8.2f} s  {count / steady:10,.0f} /s")
            # On a shared machine wall time alone misleads; PostgreSQL's own CPU is not counted in either.
            print(f"this process's CPU, raw limit:                {raw_cpu:8.2f} s  "
                  f"{1e6 * raw_cpu / count:7,.0f} us/event")
            print(f"this process's CPU, funds:                    {cpu:8.2f} s  {1e6 * cpu / count:7,.0f} us/event")
            print(f"ratio funds / raw limit: {total / raw:.1f}x from start, {steady / raw:.1f}x from the first event")
            if problems:
                print("EARNED BALANCES WRONG: " + "; ".join(problems))
                return 1
            print("earned balances and ledger: equal to the figures computed while publishing")
            return 0
        finally:
            await db.dispose()


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partners", type=int, default=2000)
    add_database_url(parser)
    return parser


if __name__ == "__main__":
    arguments = parser().parse_args()
    sys.exit(run(main(arguments.events, arguments.partners, arguments.database_url)))
