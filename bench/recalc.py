"""Benchmark: reclassify one account holding N sales, against PostgreSQL's raw one-statement update of N rows.

    .venv/bin/python bench/recalc.py [--sales 100000] [--database-url postgresql+asyncpg://...]

Without --database-url (or PARTNERHUB_TEST_DATABASE_URL) it starts an embedded PostgreSQL in a temporary
directory. It prints the time from the reclassification to its committed `recalculation.completed` event,
the time PostgreSQL takes to plainly update the same rows in one statement, and their ratio.
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
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from partnerhub.db import Database
from partnerhub.embedded import EmbeddedPostgres, create_databases, drop_databases
from partnerhub.migrations import upgrade
from services.incentives import usecases
from services.incentives.repository import SaleScope
from services.incentives.schemas import ProductIn, ProgramIn, RuleIn

START = datetime(2026, 1, 1, tzinfo=UTC)


async def seed(db: Database, count: int) -> tuple[uuid.UUID, float]:
    partner, account = uuid.uuid4(), uuid.uuid4()
    async with db.transaction() as tx:
        await usecases.partner_changed(tx, "partner.registered", "seed-p", partner, seed_tier="gold",
                                       seed_status="active", certifications=[], effective_from=None)
        await usecases.account_created(tx, "seed-a", account, "commercial", partner)
        await usecases.put_product(tx, "BENCH", ProductIn(name="bench", category="software", rebate_eligible=True))
        await usecases.create_program(tx, ProgramIn(
            code="BENCH-BASE", name="bench", kind="base_rebate", valid_from=START,
            rules=[RuleIn(classification="commercial", rate="0.05"), RuleIn(classification="key", rate="0.08")],
        ))
    rows = [
        (f"S{i:07d}", partner, account, "BENCH", f"{100 + i % 900}.{i % 100:02d}", "USD",
         START + timedelta(minutes=i), (START + timedelta(minutes=i)).strftime("%Y-%m"), "bench", "unpriced", "seed")
        for i in range(count)
    ]
    async with db.engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        await raw.copy_records_to_table(  # type: ignore[union-attr]
            "sales", records=[(*r[:4], Decimal(r[4]), *r[5:]) for r in rows],
            columns=["sale_id", "partner_id", "account_id", "sku", "amount", "currency", "booked_at", "sale_period",
                     "fingerprint", "status", "recorded_event_id"],
        )
        await connection.commit()
    started = time.perf_counter()
    async with db.transaction() as tx:
        await usecases.reprice(tx, SaleScope(account_id=account), "seed-pricing")
    return account, time.perf_counter() - started


async def main(count: int, url: str | None) -> None:
    tmp = None
    postgres = None
    if url is None:
        tmp = tempfile.mkdtemp(prefix="phb", dir="/tmp")
        postgres = EmbeddedPostgres(Path(tmp) / "pg").start()
        admin = postgres.url("postgres", "postgresql")
    else:
        admin = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    name = f"ph_bench_{secrets.token_hex(3)}"
    await create_databases(admin, [name])
    head, _, query = admin.partition("?")
    db_url = head.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    db_url += f"?{query}" if query else ""
    db = Database(db_url, "incentives")
    try:
        await asyncio.to_thread(upgrade, "incentives", db_url)
        account, initial = await seed(db, count)
        print(f"sales on one account:            {count:>10,}")
        print(f"initial pricing of all of them:  {initial:>10.2f} s")

        started = time.perf_counter()
        async with db.transaction() as tx:
            await usecases.account_changed(tx, "account.reclassified", "bench-reclass", account,
                                           START, before=("commercial", None),
                                           classification="key")
        recalculation = time.perf_counter() - started
        async with db.transaction() as tx:
            run = (await tx.session.execute(sa.text(
                "SELECT sales_recomputed, sales_changed, delta FROM recalculation_runs "
                "WHERE trigger_event_id = 'bench-reclass'"))).one()
            completed = (await tx.session.execute(sa.text(
                "SELECT count(*) FROM outbox WHERE payload->>'type' = 'recalculation.completed' "
                "AND payload->'data'->>'trigger_event_id' = 'bench-reclass'"))).scalar()
        assert completed == 1

        started = time.perf_counter()
        async with db.transaction() as tx:
            await tx.session.execute(sa.text(
                "UPDATE sales SET status = status WHERE account_id = :a AND booked_at >= :t"),
                {"a": account, "t": START})
        raw_update = time.perf_counter() - started

        print(f"reclassification -> recalculation.completed committed: {recalculation:.2f} s "
              f"({run.sales_recomputed:,} sales recomputed, {run.sales_changed:,} changed, delta {run.delta})")
        print(f"raw limit: one UPDATE of the same {run.sales_recomputed:,} rows: {raw_update:.2f} s")
        print(f"ratio recalculation / raw update: {recalculation / raw_update:.1f}x")
    finally:
        await db.dispose()
        await drop_databases(admin, [name])
        if postgres is not None:
            postgres.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=int, default=100_000)
    parser.add_argument("--database-url", default=os.environ.get("PARTNERHUB_TEST_DATABASE_URL"))
    arguments = parser.parse_args()
    asyncio.run(main(arguments.sales, arguments.database_url))
