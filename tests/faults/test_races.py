"""Races on real PostgreSQL: pricing and recalculation of one account never interleave."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from partnerhub.db import Database
from services.incentives import usecases
from services.incentives.domain import Trigger
from services.incentives.repository import SaleScope
from services.incentives.schemas import ProductIn, ProgramIn, RuleIn, SaleIn
from tests.conftest import Infrastructure

START = datetime(2026, 3, 1, tzinfo=UTC)


async def _setup(db: Database, category: str) -> tuple[uuid.UUID, uuid.UUID, str]:
    partner, account, sku = uuid.uuid4(), uuid.uuid4(), f"RACE-{uuid.uuid4().hex[:6]}"
    async with db.transaction() as tx:
        await usecases.partner_changed(tx, "partner.registered", str(uuid.uuid4()), partner, seed_tier="gold",
                                       seed_status="active", certifications=[], effective_from=None)
    async with db.transaction() as tx:
        await usecases.account_created(tx, str(uuid.uuid4()), account, "commercial", partner)
    async with db.transaction() as tx:
        await usecases.put_product(tx, sku, ProductIn(name="x", category=category, rebate_eligible=True))
    async with db.transaction() as tx:
        rules = [RuleIn(classification=c, category=category, rate=r) for c, r in
                 (("commercial", "0.05"), ("key", "0.08"), ("smb", "0.11"))]
        await usecases.create_program(tx, ProgramIn(code=f"P-{category}", name="race", kind="base_rebate",
                                                    valid_from=START - timedelta(days=90), rules=rules))
    return partner, account, sku


async def test_concurrent_sales_and_reclassifications_end_priced_by_the_final_timeline(
    infrastructure: Infrastructure,
) -> None:
    db = Database(infrastructure.database_urls["incentives"], "incentives")
    try:
        category = f"race-{uuid.uuid4().hex[:6]}"
        partner, account, sku = await _setup(db, category)

        async def sale(i: int) -> None:
            async with db.transaction() as tx:
                await usecases.receive_sale(tx, SaleIn(
                    sale_id=f"{category}-{i}", partner_id=partner, account_id=account, sku=sku,
                    amount=f"{100 + i}.00", currency="USD", booked_at=START + timedelta(hours=7 * i),
                ), str(uuid.uuid4()))

        async def reclassify(to: str, day: int) -> None:
            async with db.transaction() as tx:
                await usecases.account_changed(
                    tx, "account.reclassified", str(uuid.uuid4()), account, START + timedelta(days=day),
                    before=("commercial", partner), classification=to,
                )

        async def pricer() -> None:
            for _ in range(30):
                async with db.transaction() as tx:
                    await usecases.price_received_sales(tx, limit=7)
                await asyncio.sleep(0)

        jobs = [sale(i) for i in range(60)]
        jobs[5:5] = [pricer(), pricer()]
        jobs[10:10] = [reclassify("key", 3)]
        jobs[35:35] = [reclassify("smb", 9)]
        jobs[50:50] = [reclassify("key", 1)]
        await asyncio.gather(*jobs)
        async with db.transaction() as tx:
            while await usecases.price_received_sales(tx):
                pass

        async with db.transaction() as tx:
            check = Trigger("check", "check", account_id=account)
            again = await usecases.reprice(tx, SaleScope(account_id=account), check)
        assert again.sales_recomputed == 60
        assert again.sales_changed == 0, "a sale kept a price computed from state older than a committed change"

        async with db.transaction() as tx:
            mismatched = (await tx.session.execute(sa.text(
                "SELECT count(*) FROM accrual_items a LEFT JOIN (SELECT sale_id, coalesce(program_code, '') AS code,"
                " sum(amount) AS total FROM ledger GROUP BY 1, 2) l"
                " ON l.sale_id = a.sale_id AND l.code = a.program_code"
                " WHERE a.sale_id LIKE :prefix AND a.amount <> coalesce(l.total, 0)"
            ), {"prefix": f"{category}-%"})).scalar()
            rate_of = dict((await tx.session.execute(sa.text(
                "SELECT sale_id, rate FROM accrual_items WHERE sale_id LIKE :prefix"
            ), {"prefix": f"{category}-%"})).all())
        assert mismatched == 0
        # Final timeline: commercial, key from day 1 (late-entered, inserted before day 3), key day 3, smb day 9.
        for i in range(60):
            booked = START + timedelta(hours=7 * i)
            day = (booked - START).days
            expected = "0.05" if day < 1 else "0.08" if day < 9 else "0.11"
            assert rate_of[f"{category}-{i}"] == Decimal(expected), (i, booked)
    finally:
        await db.dispose()
