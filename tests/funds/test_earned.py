"""Earned balances following the accrual events incentives publishes, on real PostgreSQL and the broker."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

from partnerhub.events import CloudEvent
from services.funds import handlers, usecases
from services.funds.schemas import AccrualData
from tests.conftest import Publish, eventually
from tests.funds.support import accrual as accrual_data
from tests.funds.support import (
    apply,
    balance,
    earned_becomes,
    fund,
    ledger,
    new_fund,
    partner,
    run_sql,
    sweep,
)

TOPIC = "incentives.accruals"


class Sales:
    """One partner's sales as incentives reports them: accrual.recorded first, accrual.adjusted after."""

    def __init__(self, publish: Publish, partner_id: str) -> None:
        self.publish = publish
        self.partner_id = partner_id

    async def recorded(self, sale_id: str, amount: str, **fields: Any) -> str:
        return await self.publish(TOPIC, "accrual.recorded", self.partner_id,
                                  accrual_data(sale_id, self.partner_id, amount, **fields), subject=sale_id,
                                  source="incentives")

    async def adjusted(self, sale_id: str, amount: str, cause: str, **fields: Any) -> str:
        return await self.publish(TOPIC, "accrual.adjusted", self.partner_id,
                                  accrual_data(sale_id, self.partner_id, amount, cause=cause, **fields),
                                  subject=sale_id, source="incentives")


def sale() -> str:
    return f"S-{uuid.uuid4().hex[:10]}"


async def test_earned_follows_recorded_and_adjusted_accruals(funds, tokens, publish) -> None:
    mdf = await new_fund(funds, tokens, accrual_rate="0.05", valid_from="2026-01-01T00:00:00Z")
    budget_fund = await new_fund(funds, tokens)
    me = partner()
    sales = Sales(publish, me)
    big, odd, tiny_a, tiny_b, later = sale(), sale(), sale(), sale(), sale()
    big_recorded = await sales.recorded(big, "1000.00")
    await sales.recorded(sale(), "1000.00", currency="EUR")
    await sales.recorded(sale(), "1000.00", booked_at="2025-12-31T23:59:59Z")
    await sales.recorded(later, "500.00", status="not_eligible")
    await sales.recorded(sale(), "700.00", status="unpriced")
    await sales.recorded(odd, "333.35")
    await sales.recorded(tiny_a, "0.10")
    await sales.recorded(tiny_b, "0.10", booked_at="2026-01-01T00:00:00Z")
    # 1000 x 0.05 + 333.35 x 0.05 (16.6675 -> 16.67) + 2 x 0.005 rounded per sale (0.01 each)
    await earned_becomes(funds, tokens, me, mdf["code"], "66.69")

    reprice = str(uuid.uuid4())
    await sales.adjusted(later, "500.00", reprice, status="accrued")
    mine = await earned_becomes(funds, tokens, me, mdf["code"], "91.69")
    assert mine["available"] == "91.69" and mine["committed"] == "0.00"
    assert (await balance(funds, tokens, me, budget_fund["code"]))["earned"] is None

    request = await apply(funds, tokens, mdf["code"], me, "80.00")
    assert request.json()["status"] == "approved"
    beyond = await apply(funds, tokens, mdf["code"], me, "11.70")
    assert beyond.json()["status"] == "submitted" and "earned balance is 11.69" in beyond.json()["review_reason"]

    conflict_event = await sales.adjusted(big, "1000.00", str(uuid.uuid4()), status="channel_conflict")
    mine = await earned_becomes(funds, tokens, me, mdf["code"], "41.69")
    assert mine["committed"] == "80.00" and mine["available"] == "-38.31"  # shown, never hidden

    cancel_event = await sales.adjusted(odd, "333.35", str(uuid.uuid4()), status="cancelled")
    await earned_becomes(funds, tokens, me, mdf["code"], "25.02")

    # A redelivered event changes nothing, nor does recalculation.completed; the partition keeps flowing.
    await publish(TOPIC, "accrual.recorded", me, accrual_data(big, me, "1000.00"), event_id=big_recorded,
                  subject=big, source="incentives")
    await publish(TOPIC, "recalculation.completed", me, {"run_id": str(uuid.uuid4()), "partner_id": me},
                  source="incentives")
    marker = sale()
    await sales.recorded(marker, "10.00")
    mine = await earned_becomes(funds, tokens, me, mdf["code"], "25.52")
    assert mine["available"] == "-54.48"

    entries = await ledger(funds, tokens, me, mdf["code"])
    by_sale = [(e["sale_id"], e["kind"], e["amount"]) for e in entries if e["sale_id"]]
    assert (big, "credit", "50.00") in by_sale and (big, "debit", "-50.00") in by_sale
    assert (odd, "credit", "16.67") in by_sale and (odd, "debit", "-16.67") in by_sale
    assert (later, "credit", "25.00") in by_sale and (marker, "credit", "0.50") in by_sale
    assert len([s for s in by_sale if s[0] == big]) == 2
    debit = next(e for e in entries if e["sale_id"] == big and e["kind"] == "debit")
    assert debit["cause"] == conflict_event and debit["cause_type"] == "accrual.adjusted"
    assert next(e for e in entries if e["sale_id"] == odd and e["kind"] == "debit")["cause"] == cancel_event
    assert [e["kind"] for e in entries if not e["sale_id"]] == ["commitment"]
    assert all(e["currency"] == "USD" for e in entries)

    admin_view = await fund(funds, tokens, mdf["code"])
    assert admin_view["committed"] == "80.00" and float(admin_view["earned"]) >= 25.52


async def test_a_fund_created_later_is_earned_from_the_sales_already_known(funds, tokens, publish) -> None:
    me = partner()
    sales = Sales(publish, me)
    usd, eur, ineligible = sale(), sale(), sale()
    await sales.recorded(usd, "2000.00", booked_at="2026-02-10T09:00:00Z")
    await sales.recorded(eur, "3000.00", booked_at="2026-02-11T09:00:00Z", currency="EUR")
    await sales.recorded(ineligible, "4000.00", booked_at="2026-02-12T09:00:00Z", status="on_hold")

    async def known() -> bool:
        rows = await run_sql(funds, "SELECT count(*) AS n FROM sale_revenue WHERE partner_id = :p",
                             p=uuid.UUID(me))
        return rows[0].n == 3

    await eventually(known)
    jmf = await new_fund(funds, tokens, kind="jmf", currency="EUR", accrual_rate="0.02",
                         valid_from="2026-02-01T00:00:00Z")
    adif = await new_fund(funds, tokens, kind="adif", accrual_rate="0.1", valid_from="2026-02-11T00:00:00Z")
    assert (await balance(funds, tokens, me, jmf["code"]))["earned"] == "60.00"
    assert (await balance(funds, tokens, me, adif["code"]))["earned"] == "0.00"
    created_credit = (await ledger(funds, tokens, me, jmf["code"]))[0]
    assert (created_credit["kind"], created_credit["sale_id"], created_credit["cause_type"]) == (
        "credit", eur, "fund.created"
    )

    await sales.adjusted(ineligible, "4000.00", str(uuid.uuid4()), booked_at="2026-02-12T09:00:00Z")
    await earned_becomes(funds, tokens, me, adif["code"], "400.00")
    await sales.adjusted(eur, "3000.00", str(uuid.uuid4()), booked_at="2026-02-11T09:00:00Z", currency="EUR",
                         status="cancelled")
    await earned_becomes(funds, tokens, me, jmf["code"], "0.00")


async def test_unused_earned_balance_lapses_at_valid_to(funds, tokens, publish) -> None:
    closed = await new_fund(funds, tokens, accrual_rate="0.1", valid_from="2020-01-01T00:00:00Z",
                            valid_to="2021-01-01T00:00:00Z")
    me = partner()
    sales = Sales(publish, me)
    first = sale()
    await sales.recorded(first, "1000.00", booked_at="2020-06-01T00:00:00Z")
    await sales.recorded(sale(), "500.00", booked_at="2020-07-01T00:00:00Z")
    await earned_becomes(funds, tokens, me, closed["code"], "150.00")

    await sweep(funds, "funds.lapse", usecases.lapse_unused_balances)
    mine = await balance(funds, tokens, me, closed["code"])
    assert (mine["earned"], mine["lapsed"], mine["available"]) == ("150.00", "150.00", "0.00")

    await sales.adjusted(first, "1000.00", str(uuid.uuid4()), booked_at="2020-06-01T00:00:00Z", status="cancelled")
    await earned_becomes(funds, tokens, me, closed["code"], "50.00")
    await sweep(funds, "funds.lapse", usecases.lapse_unused_balances)
    mine = await balance(funds, tokens, me, closed["code"])
    assert (mine["earned"], mine["lapsed"], mine["available"]) == ("50.00", "50.00", "0.00")
    lapses = [e["amount"] for e in await ledger(funds, tokens, me, closed["code"]) if e["kind"] == "lapse"]
    assert lapses == ["150.00", "-100.00"]


async def test_accrual_data_that_does_not_validate_is_dead_lettered(funds, tokens, publish) -> None:
    me = partner()
    mdf = await new_fund(funds, tokens, accrual_rate="0.05", valid_from="2026-01-01T00:00:00Z")
    sales = Sales(publish, me)
    bad = {**accrual_data(sale(), me, "100.00"), "status": "not_eligible"}  # eligible but not accrued
    bad_id = await publish(TOPIC, "accrual.recorded", me, bad, source="incentives")
    floats = await publish(TOPIC, "accrual.recorded", me, {**accrual_data(sale(), me, "100.00"), "amount": 100.0},
                           source="incentives")
    await sales.recorded(sale(), "100.00")
    await earned_becomes(funds, tokens, me, mdf["code"], "5.00")
    for event_id in (bad_id, floats):
        rows = await run_sql(funds, "SELECT outcome FROM inbox WHERE event_id = :id", id=event_id)
        assert [r.outcome for r in rows] == ["dead_lettered"]


async def test_credits_and_approvals_racing_on_one_partner_neither_deadlock_nor_over_commit(funds, tokens) -> None:
    """Accrual events (each in its own transaction, as the consumer runs them) race requests on the same balances."""
    first = await new_fund(funds, tokens, accrual_rate="0.1", valid_from="2026-01-01T00:00:00Z")
    second = await new_fund(funds, tokens, accrual_rate="0.1", valid_from="2026-01-01T00:00:00Z", budget="150.00")
    me = partner()
    db = funds.app.state.ctx.db

    async def credit(index: int) -> None:
        data = AccrualData.model_validate(accrual_data(f"R-{uuid.uuid4().hex}", me, "100.00"))
        async with db.transaction() as tx:
            await usecases.record_accrual(tx, data, str(uuid.uuid4()), "accrual.recorded", None)

    results = await asyncio.gather(
        *[credit(i) for i in range(20)],
        *[apply(funds, tokens, second["code"], me, "10.00") for _ in range(20)],
        *[apply(funds, tokens, first["code"], me, "10.00") for _ in range(5)],
        return_exceptions=True,
    )
    assert not [r for r in results if isinstance(r, BaseException)], results
    responses = [r for r in results if r is not None]
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses if r.status_code != 201]
    for created, cap in ((first, None), (second, "150.00")):
        mine = await balance(funds, tokens, me, created["code"])
        assert mine["earned"] == "200.00"
        approved = [r for r in responses if r.json()["fund_code"] == created["code"]
                    and r.json()["status"] == "approved"]
        assert mine["committed"] == f"{10 * len(approved)}.00"
        figures = await fund(funds, tokens, created["code"])
        assert figures["committed"] == mine["committed"]
        if cap:
            assert float(figures["committed"]) <= float(cap)
    rows = await run_sql(funds, "SELECT count(*) AS n FROM fund_ledger WHERE partner_id = :p AND kind = 'commitment'",
                         p=uuid.UUID(me))
    assert rows[0].n == len([r for r in responses if r.json()["status"] == "approved"])


def _event(type_: str, data: dict[str, Any]) -> CloudEvent:
    return CloudEvent(specversion="1.0", id=str(uuid.uuid4()), source="incentives", type=type_, data=data)


async def test_a_run_with_several_events_for_one_sale_posts_each_move_and_keeps_the_last(funds, tokens) -> None:
    """What the consumer does with a batch: a run of events in one transaction, the same sale more than once."""
    mdf = await new_fund(funds, tokens, accrual_rate="0.05", valid_from="2026-01-01T00:00:00Z")
    me = partner()
    repeated, other = sale(), sale()
    run = [
        _event("accrual.adjusted", accrual_data(repeated, me, "1000.00")),
        _event("accrual.adjusted", accrual_data(other, me, "200.00")),
        _event("accrual.adjusted", accrual_data(repeated, me, "1000.00", status="channel_conflict")),
        _event("accrual.adjusted", accrual_data(repeated, me, "500.00")),
    ]
    async with funds.app.state.ctx.db.transaction() as tx:
        await handlers.on_accruals(tx, run)

    mine = await balance(funds, tokens, me, mdf["code"])
    assert mine["earned"] == "35.00"  # 500 x 0.05 + 200 x 0.05
    entries = await ledger(funds, tokens, me, mdf["code"])
    assert [(e["sale_id"], e["kind"], e["amount"], e["cause"]) for e in entries] == [
        (repeated, "credit", "50.00", run[0].id),
        (other, "credit", "10.00", run[1].id),
        (repeated, "debit", "-50.00", run[2].id),
        (repeated, "credit", "25.00", run[3].id),
    ]
    replica = await run_sql(funds, "SELECT amount, status, event_id FROM sale_revenue WHERE sale_id = :s", s=repeated)
    assert [(str(r.amount), r.status, r.event_id) for r in replica] == [("500.00", "accrued", run[3].id)]
    credits = await run_sql(funds, "SELECT amount FROM fund_credits WHERE sale_id = :s AND fund_code = :f",
                            s=repeated, f=mdf["code"])
    assert [str(r.amount) for r in credits] == ["25.00"]


async def test_a_sale_whose_facts_change_is_dead_lettered_alone(funds, tokens, publish) -> None:
    mdf = await new_fund(funds, tokens, accrual_rate="0.1", valid_from="2026-01-01T00:00:00Z")
    me = partner()
    sales = Sales(publish, me)
    moved, before, after = sale(), sale(), sale()
    # Published back to back, so they are likely to share a batch: only the bad one may be refused.
    await sales.recorded(before, "100.00")
    await sales.recorded(moved, "200.00", booked_at="2026-03-05T10:00:00Z")
    changed = await sales.adjusted(moved, "200.00", str(uuid.uuid4()), booked_at="2026-03-06T10:00:00Z")
    other_currency = await sales.adjusted(moved, "200.00", str(uuid.uuid4()), currency="EUR",
                                          booked_at="2026-03-05T10:00:00Z")
    await sales.recorded(after, "300.00")
    await earned_becomes(funds, tokens, me, mdf["code"], "60.00")
    for event_id in (changed, other_currency):
        rows = await run_sql(funds, "SELECT outcome FROM inbox WHERE event_id = :id", id=event_id)
        assert [r.outcome for r in rows] == ["dead_lettered"]
    replica = await run_sql(funds, "SELECT booked_at, currency FROM sale_revenue WHERE sale_id = :s", s=moved)
    assert [(r.booked_at.isoformat(), r.currency) for r in replica] == [("2026-03-05T10:00:00+00:00", "USD")]


async def test_concurrent_runs_over_the_same_partners_and_sales_neither_deadlock_nor_lose_a_credit(
    funds, tokens
) -> None:
    """Runs in any event order, side by side, lock sales and balances in one order; approvals race them."""
    first = await new_fund(funds, tokens, accrual_rate="0.1", valid_from="2026-01-01T00:00:00Z")
    second = await new_fund(funds, tokens, accrual_rate="0.1", valid_from="2026-01-01T00:00:00Z")
    partners = [partner() for _ in range(4)]
    db = funds.app.state.ctx.db
    known = [(sale(), p) for p in partners for _ in range(5)]
    async with db.transaction() as tx:
        await handlers.on_accruals(tx, [_event("accrual.recorded", accrual_data(s, p, "100.00")) for s, p in known])
    rng = random.Random(7)

    async def run(index: int) -> None:
        fresh = [_event("accrual.recorded", accrual_data(sale(), partners[i % 4], "10.00")) for i in range(12)]
        # The known sales again, unchanged: their rows are locked by every run, in whatever order they come.
        again = [_event("accrual.adjusted", accrual_data(s, p, "100.00")) for s, p in known]
        rng.shuffle(fresh)
        rng.shuffle(again)
        async with db.transaction() as tx:
            await handlers.on_accruals(tx, fresh)
            await handlers.on_accruals(tx, again)

    results = await asyncio.gather(
        *[run(i) for i in range(6)],
        *[apply(funds, tokens, first["code"], p, "5.00") for p in partners],
        return_exceptions=True,
    )
    assert not [r for r in results if isinstance(r, BaseException)], results
    for p in partners:
        for created in (first, second):
            # 5 known sales x 100 x 0.1 + 6 runs x 3 fresh sales x 10 x 0.1
            assert (await balance(funds, tokens, p, created["code"]))["earned"] == "68.00"
    entries = await run_sql(
        funds,
        "SELECT kind, count(*) AS n FROM fund_ledger WHERE fund_code = :f AND partner_id = ANY(:p) GROUP BY kind",
        f=first["code"], p=[uuid.UUID(p) for p in partners],
    )
    assert {(r.kind, r.n) for r in entries} == {("credit", 20 + 6 * 12), ("commitment", 4)}
