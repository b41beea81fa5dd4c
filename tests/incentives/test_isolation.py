"""No sale can block another: a sale that makes pricing raise is set aside with its reason, every other one is
priced as usual, and the set-aside sale is priced once a change touches it. GET /v1/sales/{sale_id} shows it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from partnerhub.db import asyncpg_dsn
from tests.conftest import Infrastructure, eventually
from tests.incentives.support import World, account_data

GOOD = 1000


async def _plant(dsn: str, rows: list[tuple[object, ...]]) -> None:
    """Sales written straight into the table as received, the way any writer could leave them."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "sales", records=rows,
            columns=["sale_id", "partner_id", "account_id", "sku", "amount", "currency", "booked_at",
                     "sale_period", "fingerprint", "status", "recorded_event_id"],
        )
    finally:
        await conn.close()


async def test_a_sale_that_makes_pricing_raise_is_set_aside_and_every_other_sale_is_priced(
    incentives, publish, tokens, infrastructure: Infrastructure
) -> None:
    world = await World(incentives, publish, tokens).setup()
    probe = f"P-{uuid.uuid4()}"
    await world.publish_sale(world.sale(probe, "100.00", "2026-05-01T00:00:00Z"))
    await world.amount_becomes(probe, "5.00")  # the partner, account and product are known here now
    tag = uuid.uuid4().hex[:8]
    dsn = asyncpg_dsn(infrastructure.database_urls["incentives"])
    partner, account = uuid.UUID(world.partner_id), uuid.UUID(world.account_id)
    start = datetime(2026, 5, 1, tzinfo=UTC)
    good = [(f"G-{tag}-{i:04d}", partner, account, world.sku, Decimal("100.00"), "USD",
             start + timedelta(minutes=i), "2026-05", "planted", "received", f"planted-{tag}-{i}")
            for i in range(GOOD)]
    # -infinity reads back without a time zone, so comparing it with any moment raises inside pricing.
    python_side = f"BAD-PY-{tag}"
    bad = (python_side, partner, account, world.sku, Decimal("100.00"), "USD", "-infinity", "2026-05",
           "planted", "received", f"planted-{tag}-py")
    # A constraint only this sale breaks: the save itself fails for it, inside PostgreSQL.
    database_side = f"BAD-DB-{tag}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"ALTER TABLE ledger ADD CONSTRAINT planted_{tag} CHECK (sale_id <> '{database_side}')")
    finally:
        await conn.close()
    try:
        first_half, second_half = good[: GOOD // 2], good[GOOD // 2:]
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "INSERT INTO sales (sale_id, partner_id, account_id, sku, amount, currency, booked_at, sale_period, "
                "fingerprint, status, recorded_event_id) VALUES ($1, $2, $3, $4, $5, $6, '-infinity', $7, $8, $9, $10)",
                *bad[:6], *bad[7:],
            )
        finally:
            await conn.close()
        await _plant(dsn, first_half)
        await _plant(dsn, [(database_side, partner, account, world.sku, Decimal("100.00"), "USD",
                            start + timedelta(days=3), "2026-05", "planted", "received", f"planted-{tag}-db")])
        await _plant(dsn, second_half)

        async def all_good_priced() -> bool:
            conn = await asyncpg.connect(dsn)
            try:
                return await conn.fetchval(
                    "SELECT count(*) FROM sales WHERE sale_id LIKE $1 AND status = 'accrued'", f"G-{tag}-%"
                ) == GOOD
            finally:
                await conn.close()

        await eventually(all_good_priced, within=60)
        for sale_id in (python_side, database_side):
            sale = await eventually(lambda sale_id=sale_id: _set_aside(incentives, tokens, sale_id))
            assert sale["status"] == "received" and sale["items"] == []
            assert sale["pricing_error"].startswith("pricing failed:")
        db_sale = await _set_aside(incentives, tokens, database_side)
        assert f"planted_{tag}" in db_sale["pricing_error"]
        sample = (await incentives.get(f"/v1/sales/{good[-1][0]}", headers=tokens())).json()
        assert sample["status"] == "accrued" and sample["pricing_error"] is None
        assert [(i["program_code"], i["amount"]) for i in sample["items"]] == [(world.program, "5.00")]
        metrics = (await incentives.get("/metrics")).text
        assert "partnerhub_sales_set_aside_total" in metrics
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"ALTER TABLE ledger DROP CONSTRAINT planted_{tag}")
        finally:
            await conn.close()

    # A change that touches the set-aside sale prices it again: now that it can be booked, it is.
    reclass_id = await publish("accounts.accounts", "account.reclassified", world.account_id, {
        **account_data(world.account_id, "key", world.partner_id),
        "from": "commercial", "to": "key", "effective_from": "2026-05-02T00:00:00Z",
    })

    async def repriced() -> dict | None:
        sale = (await incentives.get(f"/v1/sales/{database_side}", headers=tokens())).json()
        return sale if sale["status"] == "accrued" else None

    sale = await eventually(repriced)
    assert sale["pricing_error"] is None and [i["amount"] for i in sale["items"]] == ["8.00"]
    ledger = await world.ledger(database_side)
    assert [(e["kind"], e["amount"], e["cause"]) for e in ledger] == [("original", "8.00", reclass_id)]


async def _set_aside(incentives, tokens, sale_id: str) -> dict | None:
    response = await incentives.get(f"/v1/sales/{sale_id}", headers=tokens())
    if response.status_code != 200:
        return None
    sale = response.json()
    return sale if sale.get("pricing_error") else None


async def test_sale_lookup_by_role_and_status(incentives, publish, tokens) -> None:
    world = await World(incentives, publish, tokens).setup()
    sale_id = f"L-{uuid.uuid4()}"
    await world.publish_sale(world.sale(sale_id, "1000.00", "2026-03-05T10:00:00Z"))
    await world.amount_becomes(sale_id, "50.00")

    for headers in (tokens(), tokens("system"), tokens("partner", world.partner_id)):
        response = await incentives.get(f"/v1/sales/{sale_id}", headers=headers)
        assert response.status_code == 200, response.text
        sale = response.json()
        assert {k: sale[k] for k in ("sale_id", "partner_id", "account_id", "sku", "amount", "currency",
                                     "booked_at", "status", "cancelled_at", "pricing_error")} == {
            "sale_id": sale_id, "partner_id": world.partner_id, "account_id": world.account_id, "sku": world.sku,
            "amount": "1000.00", "currency": "USD", "booked_at": "2026-03-05T10:00:00Z", "status": "accrued",
            "cancelled_at": None, "pricing_error": None}
        assert [(i["program_code"], i["amount"], i["status"]) for i in sale["items"]] == [
            (world.program, "50.00", "accrued")]
        assert "50.00" in sale["items"][0]["explanation"]
    other = await incentives.get(f"/v1/sales/{sale_id}", headers=tokens("partner", str(uuid.uuid4())))
    assert other.status_code == 404 and other.headers["content-type"].startswith("application/problem+json")
    missing = await incentives.get(f"/v1/sales/nope-{uuid.uuid4()}", headers=tokens())
    assert missing.status_code == 404

    cancel = await incentives.post(f"/v1/sales/{sale_id}/cancel", json={"cancelled_at": "2026-04-01T00:00:00Z"},
                                   headers=tokens("system"))
    assert cancel.status_code == 202 and cancel.json()["outcome"] == "cancelled"
    sale = (await incentives.get(f"/v1/sales/{sale_id}", headers=tokens())).json()
    assert sale["status"] == "cancelled" and sale["cancelled_at"] == "2026-04-01T00:00:00Z"
    assert [(i["amount"], i["status"]) for i in sale["items"]] == [("0.00", "cancelled")]
